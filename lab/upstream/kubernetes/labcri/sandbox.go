package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A sandbox is a record, not a process: only host-network pods are accepted, so there is no network
// namespace to hold and no pause process. What a pod does own is kept faithfully without a process:
//   - a pod IPC namespace (unless hostIPC), kept alive by bind-mounting its nsfs file, as `ip netns` does;
//   - a /dev/shm tmpfs of its own (64 MiB, like other runtimes), since POSIX shm lives there;
//   - a resolv.conf written from the pod's DNS config, bind-mounted into its containers.

const nsfsMagic = 0x6e736673

func (s *server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	cfg := req.GetConfig()
	md := cfg.GetMetadata()
	if md == nil || md.Name == "" || md.Uid == "" {
		return nil, status.Error(codes.InvalidArgument, "pod sandbox config without metadata name/uid")
	}
	pod := md.Namespace + "/" + md.Name
	if err := checkSandboxConfig(req, pod); err != nil {
		log.Printf("RunPodSandbox %s refused: %v", pod, err)
		return nil, err
	}
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	sb := &sandboxRecord{
		ID: newID(), Name: md.Name, UID: md.Uid, Namespace: md.Namespace, Attempt: md.Attempt,
		Labels: copyMap(cfg.GetLabels()), Annotations: copyMap(cfg.GetAnnotations()),
		LogDirectory: cfg.GetLogDirectory(), CreatedAt: time.Now().UnixNano(), Ready: true,
		PidMode: int32(nsOpts.GetPid()), IpcMode: int32(nsOpts.GetIpc()), RuntimeHandler: req.GetRuntimeHandler(),
	}
	dir := filepath.Join(s.cfg.stateDir, "sandboxes", sb.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, status.Errorf(codes.Internal, "sandbox dir: %v", err)
	}
	if err := setupSandbox(sb, dir, cfg.GetDnsConfig()); err != nil {
		releaseSandbox(sb)
		os.RemoveAll(dir)
		log.Printf("RunPodSandbox %s failed: %v", pod, err)
		return nil, status.Errorf(codes.Internal, "pod %s: %v", pod, err)
	}
	s.mu.Lock()
	s.sandboxes[sb.ID] = sb
	s.persist()
	s.mu.Unlock()
	log.Printf("RunPodSandbox %s attempt %d -> %s", pod, md.Attempt, sb.ID)
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: sb.ID}, nil
}

// checkSandboxConfig refuses what a host-process runtime cannot give a pod.
func checkSandboxConfig(req *runtimeapi.RunPodSandboxRequest, pod string) error {
	cfg := req.GetConfig()
	sc := cfg.GetLinux().GetSecurityContext()
	ns := sc.GetNamespaceOptions()
	if ns.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		return status.Errorf(codes.FailedPrecondition, "kubeha-lab-cri runs host-network pods only (pod %s)", pod)
	}
	switch ns.GetPid() {
	case runtimeapi.NamespaceMode_NODE, runtimeapi.NamespaceMode_CONTAINER:
	case runtimeapi.NamespaceMode_POD:
		// A PID namespace shared by the pod's containers needs a process to hold it (its init); sandboxes here
		// have none.
		return status.Errorf(codes.FailedPrecondition, "kubeha-lab-cri cannot share a PID namespace between containers (shareProcessNamespace, pod %s)", pod)
	default:
		return status.Errorf(codes.FailedPrecondition, "kubeha-lab-cri: PID namespace mode %v not supported (pod %s)", ns.GetPid(), pod)
	}
	if m := ns.GetIpc(); m != runtimeapi.NamespaceMode_NODE && m != runtimeapi.NamespaceMode_POD {
		return status.Errorf(codes.FailedPrecondition, "kubeha-lab-cri: IPC namespace mode %v not supported (pod %s)", m, pod)
	}
	if u := ns.GetUsernsOptions(); u != nil && u.GetMode() != runtimeapi.NamespaceMode_NODE {
		return status.Errorf(codes.FailedPrecondition, "kubeha-lab-cri does not support user namespaces (pod %s)", pod)
	}
	if sc.GetPrivileged() {
		return status.Errorf(codes.InvalidArgument, "kubeha-lab-cri does not run privileged pods (pod %s)", pod)
	}
	if len(cfg.GetLinux().GetSysctls()) > 0 {
		return status.Errorf(codes.InvalidArgument, "kubeha-lab-cri cannot set pod sysctls on a host-network pod (pod %s)", pod)
	}
	if h := req.GetRuntimeHandler(); h != "" {
		return status.Errorf(codes.NotFound, "kubeha-lab-cri has no runtime handler %q (pod %s)", h, pod)
	}
	// Port mappings of a host-network pod are the host's ports already: nothing to set up.
	return nil
}

func setupSandbox(sb *sandboxRecord, dir string, dns *runtimeapi.DNSConfig) error {
	if sb.IpcMode == int32(runtimeapi.NamespaceMode_POD) {
		ipc := filepath.Join(dir, "ipc")
		if err := newIPCNamespace(ipc); err != nil {
			return fmt.Errorf("pod IPC namespace: %w", err)
		}
		sb.IPCNamespace = ipc
		shm := filepath.Join(dir, "shm")
		if err := os.MkdirAll(shm, 0o755); err != nil {
			return err
		}
		if err := syscall.Mount("shm", shm, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
			return fmt.Errorf("pod /dev/shm tmpfs on %s: %w", shm, err)
		}
		sb.ShmDir = shm
	}
	if dns != nil {
		path := filepath.Join(dir, "resolv.conf")
		if err := os.WriteFile(path, []byte(resolvConf(dns)), 0o644); err != nil {
			return err
		}
		sb.ResolvConf = path
	}
	return nil
}

func resolvConf(dns *runtimeapi.DNSConfig) string {
	var b strings.Builder
	if len(dns.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.Searches, " "))
	}
	for _, s := range dns.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.Options, " "))
	}
	return b.String()
}

// newIPCNamespace creates an IPC namespace and pins it on path. It unshares on a locked OS thread that is
// never unlocked: when the goroutine returns, the Go runtime ends that thread instead of reusing it in the
// wrong namespace. No container is ever forked on such a thread (spawn.go: forkLoop).
func newIPCNamespace(path string) error {
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := syscall.Unshare(syscall.CLONE_NEWIPC); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/%d/task/%d/ns/ipc", os.Getpid(), syscall.Gettid())
		if err := syscall.Mount(self, path, "", syscall.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind %s: %w", self, err)
			return
		}
		errc <- nil
	}()
	return <-errc
}

func isMountOf(path string, magic int64) bool {
	var fs syscall.Statfs_t
	return syscall.Statfs(path, &fs) == nil && int64(fs.Type) == magic
}

func sandboxMountsIntact(sb *sandboxRecord) bool {
	const tmpfsMagic = 0x01021994
	if sb.IPCNamespace != "" && !isMountOf(sb.IPCNamespace, nsfsMagic) {
		return false
	}
	return sb.ShmDir == "" || isMountOf(sb.ShmDir, tmpfsMagic)
}

// releaseSandbox drops the pod's IPC namespace and /dev/shm. Idempotent: StopPodSandbox may come many times.
func releaseSandbox(sb *sandboxRecord) {
	for _, p := range []string{sb.IPCNamespace, sb.ShmDir} {
		if p == "" {
			continue
		}
		for {
			// Lazy unmount: a racing reader must not keep the pod's mounts alive forever.
			if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
				break
			}
		}
	}
}

func (s *server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	id := req.GetPodSandboxId()
	sb, ok, ids := s.sandboxWithContainers(id)
	if !ok {
		// Idempotent per the CRI: a sandbox already gone has nothing to stop.
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	// The CRI says running containers of a stopped sandbox are forcibly terminated.
	for _, cid := range ids {
		if err := s.stopContainer(ctx, cid, 0); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	wasReady := sb.Ready
	sb.Ready = false
	releaseSandbox(sb)
	s.persist()
	s.mu.Unlock()
	if wasReady {
		log.Printf("StopPodSandbox %s (%s/%s)", id, sb.Namespace, sb.Name)
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (s *server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	id := req.GetPodSandboxId()
	sb, ok, ids := s.sandboxWithContainers(id)
	if !ok {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	for _, cid := range ids {
		if err := s.removeContainer(ctx, cid); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	releaseSandbox(sb)
	delete(s.sandboxes, id)
	s.persist()
	s.mu.Unlock()
	os.RemoveAll(filepath.Join(s.cfg.stateDir, "sandboxes", id))
	log.Printf("RemovePodSandbox %s (%s/%s)", id, sb.Namespace, sb.Name)
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func (sb *sandboxRecord) state() runtimeapi.PodSandboxState {
	if sb.Ready {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

func (sb *sandboxRecord) metadata() *runtimeapi.PodSandboxMetadata {
	return &runtimeapi.PodSandboxMetadata{Name: sb.Name, Uid: sb.UID, Namespace: sb.Namespace, Attempt: sb.Attempt}
}

func (s *server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb, ok := s.sandboxes[req.GetPodSandboxId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "pod sandbox %q not found", req.GetPodSandboxId())
	}
	return &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{
		Id: sb.ID, Metadata: sb.metadata(), State: sb.state(), CreatedAt: sb.CreatedAt,
		// Host network: the pod's addresses are the node's, which the kubelet fills in itself.
		Network: &runtimeapi.PodSandboxNetworkStatus{},
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{
			Network: runtimeapi.NamespaceMode_NODE,
			Pid:     runtimeapi.NamespaceMode(sb.PidMode),
			Ipc:     runtimeapi.NamespaceMode(sb.IpcMode),
		}}},
		Labels: sb.Labels, Annotations: sb.Annotations, RuntimeHandler: sb.RuntimeHandler,
	}}, nil
}

func (s *server) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	f := req.GetFilter()
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &runtimeapi.ListPodSandboxResponse{}
	for _, sb := range s.sandboxes {
		if f.GetId() != "" && !strings.HasPrefix(sb.ID, f.GetId()) {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != sb.state() {
			continue
		}
		if !labelsMatch(sb.Labels, f.GetLabelSelector()) {
			continue
		}
		resp.Items = append(resp.Items, &runtimeapi.PodSandbox{
			Id: sb.ID, Metadata: sb.metadata(), State: sb.state(), CreatedAt: sb.CreatedAt,
			Labels: sb.Labels, Annotations: sb.Annotations, RuntimeHandler: sb.RuntimeHandler,
		})
	}
	sort.Slice(resp.Items, func(i, j int) bool { return resp.Items[i].CreatedAt < resp.Items[j].CreatedAt })
	return resp, nil
}

// sandboxWithContainers returns the sandbox and the ids of its containers, read under one lock.
func (s *server) sandboxWithContainers(id string) (*sandboxRecord, bool, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb, ok := s.sandboxes[id]
	var ids []string
	for _, c := range s.containers {
		if c.SandboxID == id {
			ids = append(ids, c.ID)
		}
	}
	return sb, ok, ids
}
