// Command canary-routers-argo is canary-routers as an Argo Rollouts traffic-router plugin.
//
// Argo Rollouts starts it (trafficRouterPlugins in the argo-rollouts-config ConfigMap) and talks
// Go net/rpc through hashicorp/go-plugin; every call is forwarded to one long-lived
// `routers argo-plugin` process (the Python package), which does the routing.
//
// Usage (the ConfigMap entry's args):
//
//	canary-routers-argo [flags] [-- COMMAND...]
//
// COMMAND starts the Python side ("argo-plugin --plugin NAME ..." is appended); default:
// $CANARY_ROUTERS_COMMAND split on spaces, else `routers` from PATH.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	goPlugin "github.com/hashicorp/go-plugin"

	"github.com/argoproj/argo-rollouts/rollout/trafficrouting/plugin/rpc"

	"canary-routers/argo/internal/bridge"
)

// Handshake is Argo Rollouts' (rollout/trafficrouting/plugin/client): a plugin that differs
// is refused by the controller.
var Handshake = goPlugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "ARGO_ROLLOUTS_RPC_PLUGIN",
	MagicCookieValue: "trafficrouter",
}

// PluginKey is the name the controller dispenses.
const PluginKey = "RpcTrafficRouterPlugin"

// pluginName is Argo's rule for trafficRouterPlugins names (utils/config).
var pluginName = regexp.MustCompile(`^([a-zA-Z0-9\-]+)/{1}([a-zA-Z0-9_\-.]+)$`)

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		fmt.Fprintf(os.Stderr, "canary-routers bridge: ignoring %s=%q (not a duration)\n", name, v)
	}
	return def
}

// defaultPlugin is the entry name Argo gave this binary: it copies or downloads every plugin to
// plugin-bin/<org>/<name>, so the last two path elements are the trafficRouterPlugins name.
func defaultPlugin() string {
	if v := os.Getenv("CANARY_ROUTERS_PLUGIN"); v != "" {
		return v
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return filepath.Base(filepath.Dir(exe)) + "/" + filepath.Base(exe)
}

func main() {
	logOut := os.Stderr // go-plugin redirects os.Stderr once serving; the controller logs fd 2
	fs := flag.NewFlagSet("canary-routers-argo", flag.ContinueOnError)
	fs.SetOutput(logOut)
	plugin := fs.String("plugin", defaultPlugin(),
		"trafficRouterPlugins entry served, e.g. canary-routers/istio (env CANARY_ROUTERS_PLUGIN; default: the name Argo installed this binary under)")
	command := fs.String("command", os.Getenv("CANARY_ROUTERS_COMMAND"),
		"command starting the Python side, split on spaces (env CANARY_ROUTERS_COMMAND; default: routers on PATH); arguments after -- take precedence")
	kubeconfig := fs.String("kubeconfig", os.Getenv("CANARY_ROUTERS_KUBECONFIG"),
		"kubeconfig for the Python side (env CANARY_ROUTERS_KUBECONFIG; default: KUBECONFIG, ~/.kube/config or in-cluster)")
	timeout := fs.Duration("timeout", envDuration("CANARY_ROUTERS_TIMEOUT", 60*time.Second),
		"bound of every call to the Python side (env CANARY_ROUTERS_TIMEOUT)")
	startTimeout := fs.Duration("start-timeout", envDuration("CANARY_ROUTERS_START_TIMEOUT", 60*time.Second),
		"bound of the Python side's start (env CANARY_ROUTERS_START_TIMEOUT)")
	var extra multiFlag
	fs.Var(&extra, "routers-arg", "extra argument for routers argo-plugin (repeatable), e.g. --routers-arg=--log-level=debug")
	version := fs.Bool("version", false, "print the versions and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0) // the usage was asked for and printed
		}
		os.Exit(2)
	}
	argv := fs.Args()
	if len(argv) == 0 {
		argv = strings.Fields(*command)
	}
	if len(argv) == 0 {
		argv = []string{"routers"}
	}
	if *version {
		fmt.Printf("canary-routers-argo protocol %d, argo-rollouts %s\n", bridge.ProtocolVersion, argoVersion())
		return
	}
	if !pluginName.MatchString(*plugin) {
		fmt.Fprintf(logOut, "canary-routers bridge: plugin name %q is not <org>/<name>; pass --plugin=canary-routers/<target> in the ConfigMap args\n", *plugin)
		os.Exit(2)
	}

	impl := bridge.New(bridge.Options{
		Command:      argv,
		Plugin:       *plugin,
		Kubeconfig:   *kubeconfig,
		ExtraArgs:    extra,
		CallTimeout:  *timeout,
		StartTimeout: *startTimeout,
		Log:          logOut,
	})
	defer impl.Close()
	goPlugin.Serve(&goPlugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins: map[string]goPlugin.Plugin{
			PluginKey: &rpc.RpcTrafficRouterPlugin{Impl: impl},
		},
	})
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
