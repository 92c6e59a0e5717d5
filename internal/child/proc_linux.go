package child

import (
	"os"
	"os/exec"
	"syscall"
)

func setProcAttr(cmd *exec.Cmd, deathSignal os.Signal) {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if s, ok := deathSignal.(syscall.Signal); ok {
		attr.Pdeathsig = s
	}
	cmd.SysProcAttr = attr
}

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
