// Package ext mirrors the extension points Traefik's dynamic configuration embeds
// (dynamic.HTTPConfiguration and dynamic.Router inline these structs). The upstream
// package declares them empty; see ../go.mod for why this copy exists.
package ext

// HTTP is inlined into dynamic.HTTPConfiguration.
type HTTP struct{}

// Router is inlined into dynamic.Router.
type Router struct{}
