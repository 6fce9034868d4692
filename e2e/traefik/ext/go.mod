// Stand-in for Traefik's nested module github.com/traefik/traefik/dynamic/ext
// (pkg/config/dynamic/ext in Traefik's repository). Traefik's go.mod replaces it with a
// local path, and nested modules are not part of the parent's module zip, so a build
// from the module proxy has to provide it. Upstream it only declares these two types.
module github.com/traefik/traefik/dynamic/ext

go 1.26.0
