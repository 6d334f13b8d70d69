package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// The container child: the runtime re-executes its own binary as `__run SPECFILE` (as runc does with
// `runc init`) in a new mount namespace. Before the program runs, the child, single-mindedly:
//  1. joins the pod's IPC namespace, if the pod has one;
//  2. makes / recursively private, so nothing it mounts leaks back to the host (and nothing comes in);
//  3. bind-mounts every requested host path onto its container path on the host's own root file system,
//     creating a missing mount point only when the host lacks it;
//  4. masks and read-only-binds the paths the kubelet asks for (/proc/kcore, /proc/sys, ...);
//  5. sets oom_score_adj and no_new_privs, changes to the working directory and execve()s the program.
//
// It runs from init(), before anything else in the process, on the main thread (locked): setns and the execve
// must happen on the same thread, since namespaces belong to threads.

const childVerb = "__run"

type mountSpec struct {
	Host      string `json:"host"`
	Container string `json:"container"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

type childSpec struct {
	Exe           string      `json:"exe"`
	Args          []string    `json:"args"`
	Env           []string    `json:"env"`
	Cwd           string      `json:"cwd"`
	Mounts        []mountSpec `json:"mounts,omitempty"`
	MaskedPaths   []string    `json:"maskedPaths,omitempty"`
	ReadonlyPaths []string    `json:"readonlyPaths,omitempty"`
	IPCNamespace  string      `json:"ipcNamespace,omitempty"`
	NoNewPrivs    bool        `json:"noNewPrivs,omitempty"`
	OOMScoreAdj   *int64      `json:"oomScoreAdj,omitempty"`
}

func init() {
	if len(os.Args) == 3 && os.Args[1] == childVerb {
		runtime.LockOSThread()
		runChild(os.Args[2])
	}
}

// runChild never returns: it execs the program or reports on fd 3 and exits.
func runChild(specFile string) {
	report := os.NewFile(3, "status")
	syscall.CloseOnExec(3)
	fail := func(err error) {
		fmt.Fprintf(report, "kubeha-lab-cri: %v", err)
		os.Exit(127)
	}
	data, err := os.ReadFile(specFile)
	if err != nil {
		fail(err)
	}
	var spec childSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		fail(fmt.Errorf("spec %s: %w", specFile, err))
	}
	if err := setupChild(&spec); err != nil {
		fail(err)
	}
	err = syscall.Exec(spec.Exe, spec.Args, spec.Env)
	fail(fmt.Errorf("exec %s: %w", spec.Exe, err))
}

func setupChild(spec *childSpec) error {
	if spec.IPCNamespace != "" {
		if err := joinNamespace(spec.IPCNamespace, syscall.CLONE_NEWIPC); err != nil {
			return fmt.Errorf("join pod IPC namespace %s: %w", spec.IPCNamespace, err)
		}
	}
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	for _, m := range spec.Mounts {
		if err := bindMount(m.Host, m.Container, m.ReadOnly); err != nil {
			return err
		}
	}
	for _, p := range spec.MaskedPaths {
		if err := maskPath(p); err != nil {
			return err
		}
	}
	for _, p := range spec.ReadonlyPaths {
		if err := bindMount(p, p, true); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if spec.OOMScoreAdj != nil {
		if err := setOOMScoreAdj(*spec.OOMScoreAdj); err != nil {
			return err
		}
	}
	if spec.NoNewPrivs {
		const prSetNoNewPrivs = 38
		if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0, 0, 0, 0); e != 0 {
			return fmt.Errorf("no_new_privs: %w", e)
		}
	}
	if err := os.Chdir(spec.Cwd); err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	return nil
}

func joinNamespace(path string, nstype int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, _, e := syscall.RawSyscall(sysSetns, f.Fd(), uintptr(nstype), 0); e != 0 {
		return e
	}
	return nil
}

// bindMount binds host onto target (read-only if asked). A missing target is created, as a file or directory
// like the source, only because the host lacks it: the namespace shares the host's root file system.
func bindMount(host, target string, readonly bool) error {
	src, err := os.Stat(host)
	if err != nil {
		return fmt.Errorf("mount source: %w", err)
	}
	if _, err := os.Lstat(target); os.IsNotExist(err) {
		if err := createMountPoint(target, src.IsDir()); err != nil {
			return fmt.Errorf("create mount point %s: %w", target, err)
		}
	}
	if err := syscall.Mount(host, target, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", host, target, err)
	}
	if err := syscall.Mount("", target, "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", target, err)
	}
	if readonly {
		if err := remountReadOnly(target); err != nil {
			return fmt.Errorf("read-only %s: %w", target, err)
		}
	}
	return nil
}

func createMountPoint(target string, dir bool) error {
	if dir {
		return os.MkdirAll(target, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// remountReadOnly keeps the flags the mount already has (nosuid, nodev, ...): the kernel refuses to drop
// locked ones, as in an nspawn machine with a user namespace.
func remountReadOnly(target string) error {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(target, &fs); err != nil {
		return err
	}
	flags := uintptr(syscall.MS_BIND | syscall.MS_REMOUNT | syscall.MS_RDONLY)
	for st, ms := range map[int64]uintptr{
		0x2: syscall.MS_NOSUID, 0x4: syscall.MS_NODEV, 0x8: syscall.MS_NOEXEC,
		0x400: syscall.MS_NOATIME, 0x800: syscall.MS_NODIRATIME, 0x1000: syscall.MS_RELATIME,
	} {
		if int64(fs.Flags)&st != 0 {
			flags |= ms
		}
	}
	return syscall.Mount("", target, "", flags, "")
}

// maskPath hides a path: an empty read-only tmpfs over a directory, /dev/null over anything else. Paths that
// do not exist need no masking.
func maskPath(p string) error {
	fi, err := os.Stat(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	if fi.IsDir() {
		err = syscall.Mount("tmpfs", p, "tmpfs", syscall.MS_RDONLY, "size=0")
	} else {
		err = syscall.Mount("/dev/null", p, "", syscall.MS_BIND, "")
	}
	if err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	return nil
}

// setOOMScoreAdj applies the kubelet's OOM score. Lowering it needs CAP_SYS_RESOURCE, which a runtime inside a
// container or an nspawn machine may lack; then, as containerd does in that situation, the score is clamped to
// the lowest one allowed, the runtime's own (inherited). Any other failure is an error.
func setOOMScoreAdj(adj int64) error {
	const file = "/proc/self/oom_score_adj"
	err := os.WriteFile(file, []byte(strconv.FormatInt(adj, 10)), 0)
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrPermission) {
		if cur, rerr := os.ReadFile(file); rerr == nil {
			if n, perr := strconv.ParseInt(strings.TrimSpace(string(cur)), 10, 64); perr == nil && adj < n {
				return nil
			}
		}
	}
	return fmt.Errorf("oom_score_adj %d: %w", adj, err)
}
