package bridge

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/argoproj/argo-rollouts/utils/plugin/types"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The test binary doubles as a fake Python side: with FAKE_ROUTERS set it speaks the protocol
// (hello, then one answer per request) and misbehaves on demand.
func TestMain(m *testing.M) {
	if mode := os.Getenv("FAKE_ROUTERS"); mode != "" {
		fakeRouters(mode)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func fakeRouters(mode string) {
	out := json.NewEncoder(os.Stdout)
	switch mode {
	case "old-protocol":
		_ = out.Encode(map[string]any{"hello": map[string]any{"protocol": 99, "version": "x"}})
		time.Sleep(time.Minute)
		return
	case "never-ready":
		time.Sleep(time.Minute)
		return
	case "garbage":
		fmt.Println("this is not JSON")
		time.Sleep(time.Minute)
		return
	}
	_ = out.Encode(map[string]any{"hello": map[string]any{"protocol": ProtocolVersion, "version": "fake", "pid": os.Getpid()}})
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	for in.Scan() {
		var req map[string]any
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			os.Exit(3)
		}
		id := req["id"]
		method, _ := req["method"].(string)
		args, _ := req["args"].(map[string]any)
		switch {
		case method == "Ping" && mode == "wedged":
			continue // wedged: answers nothing at all
		case method == "Ping":
			_ = out.Encode(map[string]any{"id": id, "result": "pong"})
		case mode == "wedged" || (mode == "slow" && method == "SetWeight"):
			continue // never answers this call
		case mode == "die-on-call" && method == "SetWeight":
			os.Exit(7)
		case method == "VerifyWeight":
			answer := "Verified"
			if w, _ := args["desiredWeight"].(float64); w == 30 {
				answer = "NotVerified"
			} else if w == 40 {
				answer = "NotImplemented"
			} else if w == 50 {
				answer = "Maybe"
			}
			_ = out.Encode(map[string]any{"id": id, "result": answer})
		case method == "SetHeaderRoute":
			_ = out.Encode(map[string]any{"id": id, "error": "istio: setHeaderRoute 'h' is not supported: because"})
		default:
			// Echo what arrived, so tests can check the request shape.
			_ = out.Encode(map[string]any{"id": id, "result": nil})
			echo, _ := json.Marshal(map[string]any{"method": method, "args": args, "rollout": req["rollout"], "pid": os.Getpid(), "argv": os.Args[1:]})
			_, _ = fmt.Fprintln(os.Stderr, "ECHO "+string(echo))
		}
	}
}

type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.Split(strings.TrimRight(string(p), "\n"), "\n")...)
	return len(p), nil
}

// find returns what follows prefix in every line that contains it.
func (l *logBuffer) find(prefix string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if i := strings.Index(line, prefix); i >= 0 {
			out = append(out, line[i+len(prefix):])
		}
	}
	return out
}

// newBridge runs the test binary as the Python side; stderr is collected in a pipe we read.
func newBridge(t *testing.T, mode string, tweak func(*Options)) (*Bridge, *logBuffer) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKE_ROUTERS", mode)
	logs := &logBuffer{}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		scanner := bufio.NewScanner(r)
		scanner.Buffer(make([]byte, 1<<20), 16<<20)
		for scanner.Scan() {
			_, _ = logs.Write([]byte(scanner.Text() + "\n"))
		}
	}()
	opts := Options{
		Command:      []string{exe},
		Plugin:       "canary-routers/istio",
		CallTimeout:  3 * time.Second,
		StartTimeout: 3 * time.Second,
		PingTimeout:  2 * time.Second,
		Log:          w,
	}
	if tweak != nil {
		tweak(&opts)
	}
	b := New(opts)
	t.Cleanup(func() {
		b.Close()
		_ = w.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	return b, logs
}

func rollout() *v1alpha1.Rollout {
	return &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u-1"}}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func echoes(t *testing.T, logs *logBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range logs.find("ECHO ") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestCallsAreForwardedWithArgoFieldNames(t *testing.T) {
	b, logs := newBridge(t, "ok", func(o *Options) {
		o.Kubeconfig = "/k/config"
		o.ExtraArgs = []string{"--log-level=debug"}
	})
	if err := b.InitPlugin(); err.HasError() {
		t.Fatal(err)
	}
	dest := []v1alpha1.WeightDestination{{ServiceName: "exp", PodTemplateHash: "abc", Weight: 10}}
	if err := b.SetWeight(rollout(), 20, dest); err.HasError() {
		t.Fatal(err)
	}
	if err := b.UpdateHash(rollout(), "c1", "s1", nil); err.HasError() {
		t.Fatal(err)
	}
	if err := b.RemoveManagedRoutes(rollout()); err.HasError() {
		t.Fatal(err)
	}
	mirror := &v1alpha1.SetMirrorRoute{Name: "m", Match: []v1alpha1.RouteMatch{{Method: &v1alpha1.StringMatch{Exact: "GET"}}}}
	if err := b.SetMirrorRoute(rollout(), mirror); err.HasError() {
		t.Fatal(err)
	}
	waitFor(t, "5 echoes", func() bool { return len(echoes(t, logs)) == 5 })
	got := echoes(t, logs)
	argv := fmt.Sprint(got[0]["argv"])
	if argv != "[argo-plugin --plugin canary-routers/istio --log-format hclog --kubeconfig /k/config --log-level=debug]" {
		t.Fatalf("argv: %s", argv)
	}
	if got[0]["method"] != "InitPlugin" || got[0]["args"].(map[string]any)["plugin"] != "canary-routers/istio" {
		t.Fatalf("InitPlugin: %v", got[0])
	}
	sw := got[1]["args"].(map[string]any)
	if sw["desiredWeight"] != float64(20) {
		t.Fatalf("SetWeight args: %v", sw)
	}
	d := sw["additionalDestinations"].([]any)[0].(map[string]any)
	if d["serviceName"] != "exp" || d["podTemplateHash"] != "abc" || d["weight"] != float64(10) {
		t.Fatalf("destination: %v", d)
	}
	ro := got[1]["rollout"].(map[string]any)["metadata"].(map[string]any)
	if ro["name"] != "web" || ro["namespace"] != "shop" || ro["uid"] != "u-1" {
		t.Fatalf("rollout: %v", ro)
	}
	uh := got[2]["args"].(map[string]any)
	if uh["canaryHash"] != "c1" || uh["stableHash"] != "s1" || len(uh["additionalDestinations"].([]any)) != 0 {
		t.Fatalf("UpdateHash args (nil destinations must arrive as []): %v", uh)
	}
	if got[3]["method"] != "RemoveManagedRoutes" || got[4]["method"] != "SetMirrorRoute" {
		t.Fatalf("order: %v", got)
	}
	m := got[4]["args"].(map[string]any)["setMirrorRoute"].(map[string]any)
	if m["name"] != "m" || m["match"].([]any)[0].(map[string]any)["method"].(map[string]any)["exact"] != "GET" {
		t.Fatalf("setMirrorRoute: %v", m)
	}
	if b.Type() != "canary-routers/istio" {
		t.Fatalf("Type: %q", b.Type())
	}
	starts := logs.find("[INFO] canary-routers bridge [canary-routers/istio]: Python side ready")
	if len(starts) != 1 {
		t.Fatalf("one long-lived process expected, got %d starts", len(starts))
	}
}

func TestErrorsComeBackAsRpcErrorsWithTheMessage(t *testing.T) {
	b, _ := newBridge(t, "ok", nil)
	err := b.SetHeaderRoute(rollout(), &v1alpha1.SetHeaderRoute{Name: "h"})
	if err.ErrorString != "istio: setHeaderRoute 'h' is not supported: because" {
		t.Fatalf("got %q", err.ErrorString)
	}
}

func TestVerifyWeightAnswers(t *testing.T) {
	b, _ := newBridge(t, "ok", nil)
	cases := map[int32]types.RpcVerified{20: types.Verified, 30: types.NotVerified, 40: types.NotImplemented}
	for w, want := range cases {
		got, err := b.VerifyWeight(rollout(), w, nil)
		if err.HasError() || got != want {
			t.Fatalf("weight %d: got %v %q, want %v", w, got, err.ErrorString, want)
		}
	}
	got, err := b.VerifyWeight(rollout(), 50, nil)
	if got != types.NotVerified || !strings.Contains(err.ErrorString, `unknown answer "Maybe"`) {
		t.Fatalf("unknown answer: %v %q", got, err.ErrorString)
	}
}

func TestDeadPythonSideIsRestartedOnTheNextCall(t *testing.T) {
	b, logs := newBridge(t, "ok", nil)
	if err := b.RemoveManagedRoutes(rollout()); err.HasError() {
		t.Fatal(err)
	}
	waitFor(t, "echo", func() bool { return len(echoes(t, logs)) == 1 })
	first := int(echoes(t, logs)[0]["pid"].(float64))
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the child to be reaped", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.cur != nil && !b.cur.alive()
	})
	if err := b.RemoveManagedRoutes(rollout()); err.HasError() {
		t.Fatal(err)
	}
	waitFor(t, "second echo", func() bool { return len(echoes(t, logs)) == 2 })
	second := int(echoes(t, logs)[1]["pid"].(float64))
	if second == first {
		t.Fatalf("same pid %d after kill", first)
	}
	if len(logs.find("canary-routers bridge [canary-routers/istio]: Python side ready")) != 2 {
		t.Fatal("expected exactly two starts")
	}
}

func TestDeathDuringACallIsRetriedOnceOnANewProcess(t *testing.T) {
	b, logs := newBridge(t, "die-on-call", nil)
	// The fake dies on every SetWeight: the retry dies too, and the second death is reported.
	err := b.SetWeight(rollout(), 10, nil)
	if !strings.Contains(err.ErrorString, "exited during the call") {
		t.Fatalf("got %q", err.ErrorString)
	}
	if n := len(logs.find("canary-routers bridge [canary-routers/istio]: Python side ready")); n != 2 {
		t.Fatalf("expected one retry on a new process, got %d starts", n)
	}
	if len(logs.find("canary-routers bridge [canary-routers/istio]: SetWeight: the Python side exited during the call")) != 1 {
		t.Fatalf("the retry is not logged: %v", logs.lines)
	}
	if err := b.RemoveManagedRoutes(rollout()); err.HasError() {
		t.Fatalf("not restarted: %v", err)
	}
}

func TestKilledProcessIsInvisibleToTheCaller(t *testing.T) {
	b, logs := newBridge(t, "ok", nil)
	if err := b.RemoveManagedRoutes(rollout()); err.HasError() {
		t.Fatal(err)
	}
	waitFor(t, "echo", func() bool { return len(echoes(t, logs)) == 1 })
	pid := int(echoes(t, logs)[0]["pid"].(float64))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// No waiting for the bridge to notice: the call may hit the dying process and is resent.
	if err := b.RemoveManagedRoutes(rollout()); err.HasError() {
		t.Fatalf("a killed Python side must not fail the next call: %v", err)
	}
}

func TestSlowButAliveCallTimesOutAndKeepsTheProcess(t *testing.T) {
	b, logs := newBridge(t, "slow", func(o *Options) { o.CallTimeout = 300 * time.Millisecond })
	start := time.Now()
	err := b.SetWeight(rollout(), 10, nil)
	if !strings.Contains(err.ErrorString, "got no answer within 300ms") {
		t.Fatalf("got %q", err.ErrorString)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("timeout not honoured: %s", time.Since(start))
	}
	if err := b.RemoveManagedRoutes(rollout()); err.HasError() {
		t.Fatal(err)
	}
	if n := len(logs.find("canary-routers bridge [canary-routers/istio]: Python side ready")); n != 1 {
		t.Fatalf("a process that answers pings must be kept, got %d starts", n)
	}
}

func TestWedgedProcessIsReplaced(t *testing.T) {
	b, logs := newBridge(t, "wedged", func(o *Options) { o.CallTimeout = 300 * time.Millisecond })
	err := b.SetWeight(rollout(), 10, nil)
	if !strings.Contains(err.ErrorString, "got no answer") {
		t.Fatalf("got %q", err.ErrorString)
	}
	if len(logs.find("[WARN] canary-routers bridge [canary-routers/istio]: killing the Python side")) != 1 {
		t.Fatalf("a process that answers no ping must be killed; logs: %v", logs.lines)
	}
	b.mu.Lock()
	cur := b.cur
	b.mu.Unlock()
	if cur != nil {
		t.Fatal("the wedged process is still current")
	}
}

func TestStartFailuresAreClearErrors(t *testing.T) {
	cases := map[string]string{
		"old-protocol": "speaks protocol 99, this bridge speaks 1",
		"never-ready":  "not ready after 1s",
		"garbage":      "unreadable line from the Python side",
	}
	for mode, want := range cases {
		t.Run(mode, func(t *testing.T) {
			start := 10 * time.Second // a busy machine starts processes slowly
			if mode == "never-ready" {
				start = time.Second
			}
			b, _ := newBridge(t, mode, func(o *Options) { o.StartTimeout = start })
			err := b.InitPlugin()
			if !strings.Contains(err.ErrorString, want) {
				t.Fatalf("got %q, want %q", err.ErrorString, want)
			}
		})
	}
	b := New(Options{Command: []string{"/nonexistent/routers"}, Plugin: "canary-routers/istio"})
	err := b.InitPlugin()
	if !strings.Contains(err.ErrorString, "cannot start the Python side") || !strings.Contains(err.ErrorString, "CANARY_ROUTERS_COMMAND") {
		t.Fatalf("got %q", err.ErrorString)
	}
}

func TestConcurrentCallsAreMultiplexed(t *testing.T) {
	b, logs := newBridge(t, "ok", nil)
	var wg sync.WaitGroup
	errs := make(chan types.RpcError, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- b.RemoveManagedRoutes(rollout())
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err.HasError() {
			t.Fatal(err)
		}
	}
	waitFor(t, "20 echoes", func() bool { return len(echoes(t, logs)) == 20 })
}
