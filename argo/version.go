package main

import "runtime/debug"

// argoVersion is the argo-rollouts module this binary was built against (go.mod pins it).
func argoVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == "github.com/argoproj/argo-rollouts" {
			return dep.Version
		}
	}
	return "unknown"
}
