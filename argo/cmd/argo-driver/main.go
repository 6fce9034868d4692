// Command argo-driver drives a traffic-router plugin through Argo Rollouts' own plugin machinery,
// exactly as the rollouts-controller does: the argo-rollouts-config ConfigMap is read
// (utils/config), the plugins are installed into plugin-bin/ (utils/plugin), and every call goes
// through the controller's plugin Reconciler (rollout/trafficrouting/plugin: go-plugin client,
// handshake, ping, restart of an exited plugin, net/rpc + gob).
//
// Protocol (used by e2e/test_argo_protocol.py): after setup it prints {"ready":true,"pid":N};
// then one JSON command per stdin line, one JSON answer per stdout line:
//
//	{"id":1,"plugin":"canary-routers/istio","method":"SetWeight","rollout":{...},"desiredWeight":20,"additionalDestinations":[]}
//	{"id":1,"error":null}
//	{"id":2,"plugin":"canary-routers/istio","method":"VerifyWeight",...}  ->  {"id":2,"error":null,"verified":true}
//	{"id":3,"plugin":"canary-routers/istio","method":"Type"}              ->  {"id":3,"error":null,"type":"canary-routers/istio"}
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	goPlugin "github.com/hashicorp/go-plugin"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	trafficplugin "github.com/argoproj/argo-rollouts/rollout/trafficrouting/plugin"
	"github.com/argoproj/argo-rollouts/utils/config"
	"github.com/argoproj/argo-rollouts/utils/plugin"
)

type command struct {
	ID                     uint64                       `json:"id"`
	Plugin                 string                       `json:"plugin"`
	Method                 string                       `json:"method"`
	Rollout                *v1alpha1.Rollout            `json:"rollout"`
	DesiredWeight          int32                        `json:"desiredWeight"`
	AdditionalDestinations []v1alpha1.WeightDestination `json:"additionalDestinations"`
	CanaryHash             string                       `json:"canaryHash"`
	StableHash             string                       `json:"stableHash"`
	SetHeaderRoute         *v1alpha1.SetHeaderRoute     `json:"setHeaderRoute"`
	SetMirrorRoute         *v1alpha1.SetMirrorRoute     `json:"setMirrorRoute"`
}

type answer struct {
	ID       uint64  `json:"id"`
	Error    *string `json:"error"`
	Verified *bool   `json:"verified,omitempty"`
	Type     string  `json:"type,omitempty"`
	Millis   int64   `json:"millis"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "argo-driver: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig used to read the argo-rollouts-config ConfigMap")
	namespace := flag.String("namespace", "argo-rollouts", "namespace of the ConfigMap (the controller's POD_NAMESPACE)")
	configMap := flag.String("configmap", "argo-rollouts-config", "name of the ConfigMap")
	workdir := flag.String("workdir", "", "working directory: plugins are installed into <workdir>/plugin-bin")
	timeout := flag.Duration("call-timeout", 150*time.Second, "bound of one call")
	flag.Parse()

	if err := os.Setenv("POD_NAMESPACE", *namespace); err != nil {
		fail("%v", err)
	}
	if *workdir != "" {
		if err := os.Chdir(*workdir); err != nil {
			fail("%v", err)
		}
	}
	rest, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fail("kubeconfig: %v", err)
	}
	rest.Timeout = 30 * time.Second
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		fail("client: %v", err)
	}
	if _, err := config.InitializeConfig(client, *configMap); err != nil {
		fail("argo config: %v", err)
	}
	if err := plugin.DownloadPlugins(plugin.FileDownloaderImpl{}, client); err != nil {
		fail("installing plugins: %v", err)
	}

	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(map[string]any{"ready": true, "pid": os.Getpid()}); err != nil {
		fail("%v", err)
	}
	// Managed plugin processes are killed when the driver ends, as in the controller.
	defer goPlugin.CleanupClients()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	for in.Scan() {
		var cmd command
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			fmt.Fprintf(os.Stderr, "argo-driver: bad command: %v\n", err)
			return
		}
		if err := out.Encode(run(cmd, *timeout)); err != nil {
			return
		}
	}
}

func run(cmd command, timeout time.Duration) answer {
	start := time.Now()
	done := make(chan answer, 1)
	go func() { done <- call(cmd) }()
	var a answer
	select {
	case a = <-done:
	case <-time.After(timeout):
		msg := fmt.Sprintf("argo-driver: %s did not return within %s", cmd.Method, timeout)
		a = answer{Error: &msg}
	}
	a.ID = cmd.ID
	a.Millis = time.Since(start).Milliseconds()
	return a
}

func call(cmd command) answer {
	ro := cmd.Rollout
	if ro == nil {
		ro = &v1alpha1.Rollout{}
	}
	r, err := trafficplugin.NewReconciler(&trafficplugin.ReconcilerConfig{Rollout: ro, PluginName: cmd.Plugin})
	if err != nil {
		return errAnswer(err)
	}
	switch cmd.Method {
	case "Type":
		return answer{Type: r.Type()}
	case "UpdateHash":
		return errAnswer(r.UpdateHash(cmd.CanaryHash, cmd.StableHash, cmd.AdditionalDestinations...))
	case "SetWeight":
		return errAnswer(r.SetWeight(cmd.DesiredWeight, cmd.AdditionalDestinations...))
	case "SetHeaderRoute":
		return errAnswer(r.SetHeaderRoute(cmd.SetHeaderRoute))
	case "SetMirrorRoute":
		return errAnswer(r.SetMirrorRoute(cmd.SetMirrorRoute))
	case "RemoveManagedRoutes":
		return errAnswer(r.RemoveManagedRoutes())
	case "VerifyWeight":
		verified, err := r.VerifyWeight(cmd.DesiredWeight, cmd.AdditionalDestinations...)
		a := errAnswer(err)
		a.Verified = verified
		return a
	case "Connect":
		return answer{} // NewReconciler started (and InitPlugin'ed) the plugin
	}
	return errAnswer(fmt.Errorf("unknown method %q", cmd.Method))
}

func errAnswer(err error) answer {
	if err == nil {
		return answer{}
	}
	msg := err.Error()
	return answer{Error: &msg}
}
