//go:build !linux

package lab

import "syscall"

// The lab runs on Linux only (New skips or fails elsewhere); these let its users build everywhere.

func processGroup() *syscall.SysProcAttr { return nil }
func terminateGroup(int)                 {}
func killGroup(int)                      {}
func killPid(int)                        {}
