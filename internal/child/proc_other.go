//go:build !unix

package child

import (
	"os"
	"os/exec"
)

func setProcAttr(*exec.Cmd, os.Signal) {}

// terminate kills the process: there is no SIGTERM on this platform.
func terminate(p *os.Process) error { return p.Kill() }
