package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Container processes are children of the runtime and get SIGKILL when it dies (Pdeathsig). This is the simple,
// consistent choice: a restarted runtime cannot wait for or collect the logs of processes it did not start, so
// it reports them exited ("runtime restarted", state.go) and the kubelet recreates them, as it would after any
// container exit.
//
// Pdeathsig fires when the parent *thread* exits, not the process, and Go ends a thread whenever a goroutine
// locked to it returns: newIPCNamespace does that for every pod. A fork from whatever thread the calling
// goroutine ran on would tie the container's life to that thread, and a later pod's IPC namespace could take
// it down (seen on the lab: each flannel pod's sandbox SIGKILLed kube-apiserver and kube-controller-manager).
// So every fork runs on one thread locked to forkLoop, which never returns.

type forkRequest struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	forks     = make(chan forkRequest)
	forksOnce sync.Once
)

func forkLoop() {
	runtime.LockOSThread() // for good: this thread is the parent thread of every container process
	for r := range forks {
		r.done <- r.cmd.Start()
	}
}

// startOnForkThread starts cmd from the fork thread (see above).
func startOnForkThread(cmd *exec.Cmd) error {
	forksOnce.Do(func() { go forkLoop() })
	done := make(chan error, 1)
	forks <- forkRequest{cmd: cmd, done: done}
	return <-done
}

// liveProcess is a started container process.
type liveProcess struct {
	cmd      *exec.Cmd
	pid      int
	pidStart uint64
	started  time.Time
	log      *criLog
	done     chan struct{} // closed after the exit is recorded
	copiers  sync.WaitGroup
}

// spawn re-executes this binary as `__run SPECFILE` (process.go) in new mount (and, unless the pod uses the
// host PID namespace, PID) namespaces. A pipe on fd 3 reports setup failures: the child writes the error and
// exits; a successful execve closes it (close-on-exec) with nothing written.
func (s *server) spawn(c *containerRecord) (*liveProcess, error) {
	dir := filepath.Join(s.cfg.stateDir, "containers", c.ID)
	specFile := filepath.Join(dir, "spec.json")
	data, err := json.Marshal(&c.Spec)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(specFile, data, 0o600); err != nil {
		return nil, err
	}
	var lg *criLog
	if c.LogPath != "" {
		if lg, err = openCRILog(c.LogPath); err != nil {
			return nil, err
		}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	closeAll := func(fs ...*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	cmd := exec.Command("/proc/self/exe", childVerb, specFile)
	cmd.Env = []string{} // the program's environment is in the spec; the setup child needs none
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.ExtraFiles = []*os.File{statusW}
	flags := uintptr(syscall.CLONE_NEWNS)
	if c.PidMode == int32(runtimeapi.NamespaceMode_CONTAINER) {
		flags |= syscall.CLONE_NEWPID
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: flags,
		Pdeathsig:  syscall.SIGKILL,
		Setpgid:    true, // so that a kill reaches the program's own children when it shares the host PID namespace
	}
	if err := startOnForkThread(cmd); err != nil {
		closeAll(outR, outW, errR, errW, statusR, statusW)
		if lg != nil {
			lg.close()
		}
		return nil, err
	}
	closeAll(outW, errW, statusW)
	p := &liveProcess{cmd: cmd, pid: cmd.Process.Pid, started: time.Now(), log: lg, done: make(chan struct{})}
	p.copiers.Add(2)
	go p.copy(outR, "stdout")
	go p.copy(errR, "stderr")

	msg, _ := io.ReadAll(statusR)
	statusR.Close()
	if len(msg) > 0 {
		p.kill()
		p.wait()
		return nil, fmt.Errorf("%s", strings.TrimSpace(string(msg)))
	}
	if start, _, err := readProcStat(p.pid); err == nil {
		p.pidStart = start
	}
	return p, nil
}

func (p *liveProcess) copy(r *os.File, stream string) {
	defer p.copiers.Done()
	defer r.Close()
	if p.log == nil {
		io.Copy(io.Discard, r) // no log path: the output still has to be drained
		return
	}
	copyToCRILog(r, stream, p.log)
}

// wait reaps the process and returns its exit code, 128+signal for a killed one (as shells and other runtimes
// report it). The log is closed once both streams hit EOF; a descendant holding them open (host PID namespace)
// does not delay the exit being recorded.
func (p *liveProcess) wait() int32 {
	_ = p.cmd.Wait()
	st := p.cmd.ProcessState
	go func() {
		p.copiers.Wait()
		if p.log != nil {
			p.log.close()
		}
	}()
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return int32(128 + int(ws.Signal()))
	}
	return int32(st.ExitCode())
}

// terminate asks the program to stop. With a PID namespace of its own the program is that namespace's init and,
// exactly as in any container, only receives signals it handles.
func (p *liveProcess) terminate() { _ = syscall.Kill(p.pid, syscall.SIGTERM) }

func (p *liveProcess) kill() {
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
}
