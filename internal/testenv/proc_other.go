//go:build !linux

package testenv

import (
	"os"
	"os/exec"
)

func setProcAttr(*exec.Cmd) {}

func terminate(p *os.Process) error { return p.Signal(os.Interrupt) }
