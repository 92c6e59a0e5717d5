// Package child runs a server program (influxd, mosquitto) as a child process
// that cannot outlive its parent: started from a goroutine locked to its OS
// thread, in its own process group, with a parent-death signal on Linux. It is
// shared by `eldercare up` (internal/influxd) and the tests (internal/testenv).
package child

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"time"
)

// Process is a started child whose exit is observed by one goroutine. Its
// methods are safe for concurrent use.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed after Wait returns
	err  error         // Wait's result; valid once done is closed
}

// Start starts cmd in its own process group (so a terminal's Ctrl-C to the
// parent's group does not reach it) with deathSignal sent to it by the kernel
// when the parent dies (Linux only; ignored elsewhere). cmd's SysProcAttr is
// replaced. Start returns exec.Cmd.Start's error.
//
// The child is started from a goroutine that stays locked to its OS thread
// for the child's whole life, because on Linux the parent-death signal fires
// when the thread that forked the child exits, not only when the parent
// process does.
func Start(cmd *exec.Cmd, deathSignal os.Signal) (*Process, error) {
	setProcAttr(cmd, deathSignal)
	p := &Process{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
		// The goroutine ends still locked, so its thread exits; the child is already gone.
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the child has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is exec.Cmd.Wait's result; nil until Done is closed.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Exited reports whether the child has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL (no-op once the child has exited) and waits for the exit.
func (p *Process) Kill() {
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// Stop asks the child to terminate (SIGTERM; a kill where the platform has no
// SIGTERM), waits up to grace, then kills it. It returns nil when the child
// exited within grace (or had already exited), and an error naming the pid
// when it had to be killed.
func (p *Process) Stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	if err := terminate(p.cmd.Process); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = p.cmd.Process.Kill()
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("pid %d did not stop within %s of SIGTERM; killed", p.cmd.Process.Pid, grace)
}

// Tail is an io.Writer that keeps the last Max bytes written to it: a child's
// log, for error messages. The zero value keeps nothing; use NewTail.
type Tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

// NewTail returns a Tail keeping the last max bytes.
func NewTail(max int) *Tail { return &Tail{max: max} }

// Write keeps the last max bytes of everything written; it never fails.
func (b *Tail) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// String returns the bytes kept.
func (b *Tail) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
