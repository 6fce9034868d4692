// Wrapper module that builds Traefik (the pure-Go data plane of e2e/test_traffic.py) from
// the Go module proxy. `go install github.com/traefik/traefik/v3/cmd/traefik@v3.7.x` does
// not work: Traefik's go.mod carries replace/exclude lines, which only apply in the main
// module, so they are copied here verbatim. Kept apart from e2e/controlplane: Traefik wants
// client-go v0.35+/v0.36 while the control-plane tools pin v0.34.
// Bump: change the version below, copy Traefik's replace/exclude lines again, `go mod tidy`.
module canary-routers/e2e/traefik

go 1.26.0

tool github.com/traefik/traefik/v3/cmd/traefik

require github.com/traefik/traefik/v3 v3.7.13

// Nested module of Traefik's repository, replaced by a path in Traefik's own go.mod; a
// local stand-in (./ext) provides it here.
require github.com/traefik/traefik/dynamic/ext v0.0.0-00010101000000-000000000000

replace github.com/traefik/traefik/dynamic/ext => ./ext

// Copied from Traefik v3.7.13's go.mod (containous forks).
replace (
	github.com/abbot/go-http-auth => github.com/containous/go-http-auth v0.4.1-0.20260804094822-b975dcaa8c48
	github.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59
)

// Copied from Traefik v3.7.13's go.mod (ambiguous import in the tencentcloud monorepo).
exclude github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible
