//go:build unix && !linux

package influxd

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr puts the child in its own process group, so a terminal's SIGINT to the parent's group does not reach it.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
