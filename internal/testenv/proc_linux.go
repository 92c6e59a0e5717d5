package testenv

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill the child if the test binary dies (for example on a -timeout panic, when
// t.Cleanup does not run), so no broker outlives its test holding a port.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
