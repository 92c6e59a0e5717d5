package influxd

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr puts the child in its own process group, so a terminal's SIGINT to the parent's group does not reach
// it, and asks the kernel to send it SIGTERM if the thread that started it (locked for the child's life) dies.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
