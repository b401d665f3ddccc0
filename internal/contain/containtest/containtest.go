// Package containtest makes a recycled pid on purpose, for tests that show
// a process or group handle never signals the process that got its pid.
package containtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
)

// ErrTaken says that other processes took the pid first on every try.
var ErrTaken = errors.New("the pid was taken by another process on every try")

// StartAt starts the command that mk makes so that its process gets pid,
// which must be free, by setting the kernel's last-used pid just below it.
// That needs root (CAP_SYS_ADMIN in the pid namespace). A process forking
// at the same moment can take the pid first; a command that got another
// pid is killed and reaped, and mk called again, up to tries times.
func StartAt(pid, tries int, mk func() *exec.Cmd) (*exec.Cmd, error) {
	for range tries {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			return nil, fmt.Errorf("cannot choose the next pid: %w", err)
		}
		cmd := mk()
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		if cmd.Process.Pid == pid {
			return cmd, nil
		}
		cmd.Process.Kill()
		_ = cmd.Wait() // killed: it only reaps it
	}
	return nil, ErrTaken
}
