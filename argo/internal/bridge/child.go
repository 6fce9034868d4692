package bridge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// ProtocolVersion is the version of the JSON-lines protocol spoken with `routers argo-plugin`.
// The Python side announces its own in its first line; a mismatch refuses to start.
const ProtocolVersion = 1

// maxLine bounds one message from the Python side (results are small; errors a few KiB).
const maxLine = 16 << 20

// request is one line to the Python side.
type request struct {
	ID      uint64          `json:"id"`
	Method  string          `json:"method"`
	Rollout json.RawMessage `json:"rollout,omitempty"`
	Args    any             `json:"args,omitempty"`
}

// hello is the first line the Python side writes once it is ready.
type hello struct {
	Protocol int    `json:"protocol"`
	Version  string `json:"version"`
	Plugin   string `json:"plugin"`
	PID      int    `json:"pid"`
}

// response is every later line: the answer to the request with the same id.
type response struct {
	ID     uint64          `json:"id"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *string         `json:"error,omitempty"`
	Hello  *hello          `json:"hello,omitempty"`
}

// child is one running `routers argo-plugin` process and the calls waiting for its answers.
type child struct {
	cmd   *exec.Cmd
	stdin *os.File

	writeMu sync.Mutex

	mu      sync.Mutex
	pending map[uint64]chan response
	exited  bool
	exitErr error

	ready chan hello    // receives the hello line once
	done  chan struct{} // closed once the process has exited and every waiter was failed
}

// startChild starts argv with a pipe on stdin and stdout; stderr goes to logOut.
func startChild(argv []string, logOut io.Writer) (*child, error) {
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		_ = inR.Close()
		_ = inW.Close()
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = inR
	cmd.Stdout = outW
	cmd.Stderr = logOut
	// The Python side also exits when its stdin closes (this process died); the signal covers
	// a bridge killed with SIGKILL while a request is in flight.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		for _, f := range []*os.File{inR, inW, outR, outW} {
			_ = f.Close()
		}
		return nil, err
	}
	_ = inR.Close()
	_ = outW.Close()
	c := &child{
		cmd:     cmd,
		stdin:   inW,
		pending: map[uint64]chan response{},
		ready:   make(chan hello, 1),
		done:    make(chan struct{}),
	}
	go c.readLoop(outR)
	return c, nil
}

func (c *child) pid() int {
	if c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

func (c *child) readLoop(out *os.File) {
	reader := bufio.NewReaderSize(out, 64<<10)
	var readErr error
	for {
		line, err := readLine(reader)
		if err != nil {
			readErr = err
			break
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var resp response
		if err := json.Unmarshal(line, &resp); err != nil {
			readErr = fmt.Errorf("unreadable line from the Python side: %v: %.200q", err, line)
			break
		}
		if resp.Hello != nil {
			select {
			case c.ready <- *resp.Hello:
			default:
			}
			continue
		}
		c.mu.Lock()
		ch := c.pending[resp.ID]
		delete(c.pending, resp.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- resp // buffered: never blocks
		}
	}
	_ = out.Close()
	// A protocol error leaves a live but useless process: end it.
	if readErr != nil && !errors.Is(readErr, io.EOF) {
		_ = c.cmd.Process.Kill()
	}
	_ = c.stdin.Close()
	waitErr := c.cmd.Wait()
	c.mu.Lock()
	c.exited = true
	switch {
	case readErr != nil && !errors.Is(readErr, io.EOF):
		c.exitErr = readErr
	case waitErr != nil:
		c.exitErr = waitErr
	default:
		c.exitErr = errors.New("exited")
	}
	pending := c.pending
	c.pending = map[uint64]chan response{}
	c.mu.Unlock()
	for _, ch := range pending {
		close(ch)
	}
	close(c.done)
}

func readLine(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return nil, err
		}
		buf = append(buf, chunk...)
		if len(buf) > maxLine {
			return nil, fmt.Errorf("line longer than %d bytes", maxLine)
		}
		if !isPrefix {
			return buf, nil
		}
	}
}

func (c *child) alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.exited
}

func (c *child) exitError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exitErr
}

// waitReady waits for the hello line, the process to exit, or the timeout.
func (c *child) waitReady(timeout time.Duration) (hello, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case h := <-c.ready:
		return h, nil
	case <-c.done:
		return hello{}, fmt.Errorf("exited before it was ready (%v)", c.exitError())
	case <-timer.C:
		return hello{}, fmt.Errorf("not ready after %s", timeout)
	}
}

// errTimeout marks an exchange that got no answer in time.
var errTimeout = errors.New("timeout")

// errExited marks an exchange that failed because the process is gone.
var errExited = errors.New("the Python side exited")

// exchange sends one request and waits for its answer until the deadline.
func (c *child) exchange(req request, deadline time.Time) (response, error) {
	line, err := json.Marshal(req)
	if err != nil {
		return response{}, fmt.Errorf("encoding the request: %w", err)
	}
	line = append(line, '\n')
	ch := make(chan response, 1)
	c.mu.Lock()
	if c.exited {
		c.mu.Unlock()
		return response{}, fmt.Errorf("%w before the call (%v)", errExited, c.exitErr)
	}
	c.pending[req.ID] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, req.ID)
		c.mu.Unlock()
	}

	c.writeMu.Lock()
	_ = c.stdin.SetWriteDeadline(deadline)
	_, err = c.stdin.Write(line)
	c.writeMu.Unlock()
	if err != nil {
		forget()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return response{}, fmt.Errorf("%w writing the request", errTimeout)
		}
		return response{}, fmt.Errorf("%w: writing the request: %v (%v)", errExited, err, c.exitError())
	}

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case resp, ok := <-ch:
		if !ok {
			return response{}, fmt.Errorf("%w during the call (%v)", errExited, c.exitError())
		}
		return resp, nil
	case <-timer.C:
		forget()
		return response{}, fmt.Errorf("%w waiting for the answer", errTimeout)
	}
}

// stop closes stdin (the Python side exits on EOF) and kills the process after grace.
func (c *child) stop(grace time.Duration) {
	c.writeMu.Lock()
	_ = c.stdin.Close()
	c.writeMu.Unlock()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-c.done:
	case <-timer.C:
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// kill ends the process now and waits (bounded) until the read loop has seen it go.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-c.done:
	case <-timer.C:
	}
}
