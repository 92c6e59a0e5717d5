//go:build !unix

package influxd

import (
	"os"
	"os/exec"
)

func setProcAttr(*exec.Cmd) {}

// terminate kills the process: there is no SIGTERM on this platform.
func terminate(p *os.Process) error { return p.Kill() }
