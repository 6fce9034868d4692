// Package bridge implements Argo Rollouts' TrafficRouterPlugin by forwarding every call, as
// one JSON line, to a long-lived `routers argo-plugin` process (canary-routers' Python side),
// which does all the routing. The bridge holds no routing logic and no state besides the
// process: a process that dies (or stops answering) is replaced on the next call, and the
// Python side rebuilds what it needs from the Rollout and the route objects.
package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/argoproj/argo-rollouts/rollout/trafficrouting/plugin/rpc"
	"github.com/argoproj/argo-rollouts/utils/plugin/types"
)

// Options configure the bridge (see main.go for the flags and environment variables).
type Options struct {
	// Command starts the Python side; "argo-plugin" and its flags are appended.
	Command []string
	// Plugin is the trafficRouterPlugins entry this process serves, e.g. canary-routers/istio.
	Plugin string
	// Kubeconfig, when set, is passed on as --kubeconfig (else the Python side uses
	// KUBECONFIG, ~/.kube/config or the in-cluster service account).
	Kubeconfig string
	// ExtraArgs are appended to the Python side's command line.
	ExtraArgs []string
	// CallTimeout bounds every call (write + answer).
	CallTimeout time.Duration
	// StartTimeout bounds the start of the Python side (until its hello line).
	StartTimeout time.Duration
	// PingTimeout bounds the liveness probe sent after a call timed out.
	PingTimeout time.Duration
	// Log receives the bridge's own messages and the Python side's stderr.
	Log io.Writer
}

// Bridge is the TrafficRouterPlugin served to Argo Rollouts.
type Bridge struct {
	opts Options

	mu     sync.Mutex
	cur    *child
	starts int

	nextID atomic.Uint64
}

var _ rpc.TrafficRouterPlugin = (*Bridge)(nil)

// New returns a bridge; the Python side starts on the first call (InitPlugin, normally).
func New(opts Options) *Bridge {
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 60 * time.Second
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 60 * time.Second
	}
	if opts.PingTimeout <= 0 {
		opts.PingTimeout = 5 * time.Second
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	return &Bridge{opts: opts}
}

// logf writes one line with a level prefix go-plugin's client understands ([INFO], [WARN], ...),
// so Argo's controller log shows it at that level.
func (b *Bridge) logf(level, format string, args ...any) {
	_, _ = fmt.Fprintf(b.opts.Log, "[%s] canary-routers bridge [%s]: %s\n", level, b.opts.Plugin, fmt.Sprintf(format, args...))
}

func (b *Bridge) argv() []string {
	argv := append([]string{}, b.opts.Command...)
	argv = append(argv, "argo-plugin", "--plugin", b.opts.Plugin, "--log-format", "hclog")
	if b.opts.Kubeconfig != "" {
		argv = append(argv, "--kubeconfig", b.opts.Kubeconfig)
	}
	return append(argv, b.opts.ExtraArgs...)
}

// process returns the running Python side, starting one when there is none (or it died).
func (b *Bridge) process() (*child, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur != nil && b.cur.alive() {
		return b.cur, nil
	}
	if b.cur != nil {
		b.logf("WARN", "Python side (pid %d) has exited (%v); starting a new one", b.cur.pid(), b.cur.exitError())
		b.cur = nil
	}
	argv := b.argv()
	c, err := startChild(argv, b.opts.Log)
	if err != nil {
		return nil, fmt.Errorf("cannot start the Python side %q: %v (set the command with the "+
			"plugin args after `--` or CANARY_ROUTERS_COMMAND; the default is `routers` on PATH)",
			strings.Join(argv, " "), err)
	}
	h, err := c.waitReady(b.opts.StartTimeout)
	if err == nil && h.Protocol != ProtocolVersion {
		err = fmt.Errorf("speaks protocol %d, this bridge speaks %d (install matching versions "+
			"of the bridge and the canary-routers package)", h.Protocol, ProtocolVersion)
	}
	if err != nil {
		c.kill()
		return nil, fmt.Errorf("the Python side %q %v", strings.Join(argv, " "), err)
	}
	b.starts++
	b.logf("INFO", "Python side ready: pid %d, canary-routers %s (start #%d)", c.pid(), h.Version, b.starts)
	b.cur = c
	return c, nil
}

// discard kills c if it is still the current process (the next call starts a fresh one).
func (b *Bridge) discard(c *child, why string) {
	b.mu.Lock()
	current := b.cur == c
	if current {
		b.cur = nil
	}
	b.mu.Unlock()
	if current {
		b.logf("WARN", "killing the Python side (pid %d): %s", c.pid(), why)
		c.kill()
	}
}

// retire forgets a process that died under a call; it may not be reaped yet, so it is waited
// for (bounded), and the next call starts a fresh one.
func (b *Bridge) retire(c *child) {
	b.mu.Lock()
	if b.cur == c {
		b.cur = nil
	}
	b.mu.Unlock()
	c.kill() // a no-op for a process that is gone; bounded wait for its read loop
}

// Close stops the Python side (it also exits by itself when this process goes).
func (b *Bridge) Close() {
	b.mu.Lock()
	c := b.cur
	b.cur = nil
	b.mu.Unlock()
	if c != nil {
		c.stop(5 * time.Second)
	}
}

// call forwards one call and returns its result, or an error carrying the Python side's message.
//
// A process found dead during the call is replaced and the call sent once more: every call is
// an idempotent, declarative apply on the Python side, so repeating one is safe, and a killed
// Python side costs Argo nothing.
func (b *Bridge) call(method string, rollout *v1alpha1.Rollout, args any) (json.RawMessage, error) {
	req := request{Method: method, Args: args}
	if rollout != nil {
		raw, err := json.Marshal(rollout)
		if err != nil {
			return nil, fmt.Errorf("encoding the Rollout: %v", err)
		}
		req.Rollout = raw
	}
	deadline := time.Now().Add(b.opts.CallTimeout)
	for attempt := 1; ; attempt++ {
		c, err := b.process()
		if err != nil {
			return nil, err
		}
		req.ID = b.nextID.Add(1)
		resp, err := c.exchange(req, deadline)
		switch {
		case err == nil && resp.Error != nil:
			return nil, fmt.Errorf("%s", *resp.Error)
		case err == nil:
			return resp.Result, nil
		case errors.Is(err, errTimeout):
			b.probe(c)
			return nil, fmt.Errorf("canary-routers: %s got no answer within %s (%v); the call is "+
				"retried on the next reconcile", method, b.opts.CallTimeout, err)
		case errors.Is(err, errExited) && attempt == 1 && time.Now().Before(deadline):
			b.logf("WARN", "%s: %v; sending it to a new Python side", method, err)
			b.retire(c)
			continue
		}
		return nil, fmt.Errorf("canary-routers: %s: %v; the Python side is restarted on the next call", method, err)
	}
}

// probe pings a process that let a call time out: one that does not answer a ping either is
// wedged and is replaced; one that does is merely slow and keeps its work.
func (b *Bridge) probe(c *child) {
	ping := request{ID: b.nextID.Add(1), Method: "Ping"}
	if _, err := c.exchange(ping, time.Now().Add(b.opts.PingTimeout)); err != nil {
		b.discard(c, fmt.Sprintf("no answer to a ping within %s after a timed-out call (%v)", b.opts.PingTimeout, err))
	}
}

func rpcError(err error) types.RpcError {
	if err == nil {
		return types.RpcError{}
	}
	msg := err.Error()
	if msg == "" {
		msg = "canary-routers: unknown error"
	}
	return types.RpcError{ErrorString: msg}
}

// destinations keeps a nil slice as [] so the Python side always sees a list.
func destinations(d []v1alpha1.WeightDestination) []v1alpha1.WeightDestination {
	if d == nil {
		return []v1alpha1.WeightDestination{}
	}
	return d
}

// --- rpc.TrafficRouterPlugin -------------------------------------------------------------

// InitPlugin starts the Python side and lets it check its configuration and the cluster.
func (b *Bridge) InitPlugin() types.RpcError {
	_, err := b.call("InitPlugin", nil, map[string]any{"plugin": b.opts.Plugin})
	return rpcError(err)
}

// UpdateHash forwards the pod-template hashes (Istio DestinationRule subsets use them).
func (b *Bridge) UpdateHash(rollout *v1alpha1.Rollout, canaryHash, stableHash string, additionalDestinations []v1alpha1.WeightDestination) types.RpcError {
	_, err := b.call("UpdateHash", rollout, map[string]any{
		"canaryHash":             canaryHash,
		"stableHash":             stableHash,
		"additionalDestinations": destinations(additionalDestinations),
	})
	return rpcError(err)
}

// SetWeight forwards the desired canary weight (out of maxTrafficWeight) and experiment weights.
func (b *Bridge) SetWeight(rollout *v1alpha1.Rollout, desiredWeight int32, additionalDestinations []v1alpha1.WeightDestination) types.RpcError {
	_, err := b.call("SetWeight", rollout, map[string]any{
		"desiredWeight":          desiredWeight,
		"additionalDestinations": destinations(additionalDestinations),
	})
	return rpcError(err)
}

// SetHeaderRoute forwards a setHeaderRoute step (an empty match removes the named route).
func (b *Bridge) SetHeaderRoute(rollout *v1alpha1.Rollout, setHeaderRoute *v1alpha1.SetHeaderRoute) types.RpcError {
	_, err := b.call("SetHeaderRoute", rollout, map[string]any{"setHeaderRoute": setHeaderRoute})
	return rpcError(err)
}

// SetMirrorRoute forwards a setMirrorRoute step (an empty match removes the named route).
func (b *Bridge) SetMirrorRoute(rollout *v1alpha1.Rollout, setMirrorRoute *v1alpha1.SetMirrorRoute) types.RpcError {
	_, err := b.call("SetMirrorRoute", rollout, map[string]any{"setMirrorRoute": setMirrorRoute})
	return rpcError(err)
}

// RemoveManagedRoutes forwards the removal of every managed (header and mirror) route.
func (b *Bridge) RemoveManagedRoutes(rollout *v1alpha1.Rollout) types.RpcError {
	_, err := b.call("RemoveManagedRoutes", rollout, map[string]any{})
	return rpcError(err)
}

// VerifyWeight asks whether the weights are in effect: Verified, NotVerified or NotImplemented.
func (b *Bridge) VerifyWeight(rollout *v1alpha1.Rollout, desiredWeight int32, additionalDestinations []v1alpha1.WeightDestination) (types.RpcVerified, types.RpcError) {
	raw, err := b.call("VerifyWeight", rollout, map[string]any{
		"desiredWeight":          desiredWeight,
		"additionalDestinations": destinations(additionalDestinations),
	})
	if err != nil {
		return types.NotVerified, rpcError(err)
	}
	var answer string
	if err := json.Unmarshal(raw, &answer); err != nil {
		return types.NotVerified, rpcError(fmt.Errorf("canary-routers: VerifyWeight: unreadable answer %s", raw))
	}
	switch answer {
	case "Verified":
		return types.Verified, types.RpcError{}
	case "NotVerified":
		return types.NotVerified, types.RpcError{}
	case "NotImplemented":
		return types.NotImplemented, types.RpcError{}
	}
	return types.NotVerified, rpcError(fmt.Errorf("canary-routers: VerifyWeight: unknown answer %q", answer))
}

// Type names this router in Argo's logs: the trafficRouterPlugins entry (stable per process).
func (b *Bridge) Type() string {
	if b.opts.Plugin != "" {
		return b.opts.Plugin
	}
	return "canary-routers"
}
