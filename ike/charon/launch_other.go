//go:build !linux

package charon

import (
	"errors"
	"io"
	"syscall"
)

type launchSpec struct {
	binary    string
	runDir    string
	netnsPath string
	env       []string
	output    io.Writer
}

type process struct {
	pid  int
	done chan struct{}
	err  error
}

func launch(launchSpec) (*process, error) {
	return nil, errors.New("charon supervision needs Linux")
}

func signalProcess(int, syscall.Signal) {}
func killGroup(int)                     {}
