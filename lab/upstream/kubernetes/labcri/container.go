package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Containers are host processes started from a program image (images.go) in a mount namespace of their own
// (process.go), so that the kubelet's mounts, whose host and container paths differ, are what the program sees.

// imageDefaultPath stands in for the PATH an image config would carry.
const imageDefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func (s *server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	md := cfg.GetMetadata()
	if md == nil || md.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "container config without metadata name")
	}
	s.mu.Lock()
	sb, ok := s.sandboxes[req.GetPodSandboxId()]
	var sbCopy sandboxRecord
	if ok {
		sbCopy = *sb
	}
	s.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "pod sandbox %q not found", req.GetPodSandboxId())
	}
	if !sbCopy.Ready {
		return nil, status.Errorf(codes.FailedPrecondition, "pod sandbox %s is not ready", sbCopy.ID)
	}
	who := fmt.Sprintf("container %s of pod %s/%s", md.Name, sbCopy.Namespace, sbCopy.Name)
	c, err := s.buildContainer(&sbCopy, cfg, who)
	if err != nil {
		log.Printf("CreateContainer %s refused: %v", who, err)
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(s.cfg.stateDir, "containers", c.ID), 0o700); err != nil {
		return nil, status.Errorf(codes.Internal, "container dir: %v", err)
	}
	s.mu.Lock()
	if _, still := s.sandboxes[sbCopy.ID]; !still {
		s.mu.Unlock()
		return nil, status.Errorf(codes.NotFound, "pod sandbox %q removed meanwhile", sbCopy.ID)
	}
	s.containers[c.ID] = c
	s.persist()
	s.mu.Unlock()
	log.Printf("CreateContainer %s attempt %d -> %s: %q", who, md.Attempt, c.ID, c.Spec.Args)
	return &runtimeapi.CreateContainerResponse{ContainerId: c.ID}, nil
}

// buildContainer validates the config and turns it into a record; everything that cannot be honoured is
// refused here, before anything runs.
func (s *server) buildContainer(sb *sandboxRecord, cfg *runtimeapi.ContainerConfig, who string) (*containerRecord, error) {
	if err := checkContainerConfig(cfg, who); err != nil {
		return nil, err
	}
	ref := cfg.GetImage().GetImage()
	img := s.images.lookup(ref)
	if img == nil {
		if _, err := s.images.resolve(ref); err != nil {
			return nil, err
		}
		return nil, status.Errorf(codes.NotFound, "%s: image %q is not present (not pulled)", who, ref)
	}
	if img.program == "" {
		return nil, status.Errorf(codes.FailedPrecondition, "%s: image %q is a sandbox-only image, it has no program to run", who, ref)
	}
	env := []string{}
	hasPath := false
	for _, kv := range cfg.GetEnvs() {
		env = append(env, kv.Key+"="+string(kv.Value))
		hasPath = hasPath || kv.Key == "PATH"
	}
	if !hasPath {
		env = append([]string{imageDefaultPath}, env...)
	}
	args, exe, err := commandLine(cfg, img, env)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s: %v", who, err)
	}
	mounts, err := containerMounts(sb, cfg, who)
	if err != nil {
		return nil, err
	}
	sc := cfg.GetLinux().GetSecurityContext()
	spec := childSpec{
		Exe: exe, Args: args, Env: env, Cwd: cfg.GetWorkingDir(), Mounts: mounts,
		MaskedPaths: sc.GetMaskedPaths(), ReadonlyPaths: sc.GetReadonlyPaths(),
		IPCNamespace: sb.IPCNamespace, NoNewPrivs: sc.GetNoNewPrivs(),
	}
	if spec.Cwd == "" {
		spec.Cwd = "/"
	}
	if r := cfg.GetLinux().GetResources(); r != nil && r.OomScoreAdj != 0 {
		adj := r.OomScoreAdj
		spec.OOMScoreAdj = &adj
	}
	pidMode := runtimeapi.NamespaceMode(sb.PidMode)
	if m := sc.GetNamespaceOptions(); m != nil {
		pidMode = m.GetPid()
	}
	if pidMode == runtimeapi.NamespaceMode_POD || pidMode == runtimeapi.NamespaceMode_TARGET {
		return nil, status.Errorf(codes.InvalidArgument, "%s: kubeha-lab-cri cannot share PID namespaces (mode %v)", who, pidMode)
	}
	var requested []mountSpec
	for _, m := range cfg.GetMounts() {
		requested = append(requested, mountSpec{Host: m.HostPath, Container: m.ContainerPath, ReadOnly: m.Readonly})
	}
	logPath := ""
	if cfg.GetLogPath() != "" {
		logPath = filepath.Join(sb.LogDirectory, cfg.GetLogPath())
	}
	return &containerRecord{
		ID: newID(), SandboxID: sb.ID, Name: cfg.Metadata.Name, Attempt: cfg.Metadata.Attempt,
		Image: ref, UserSpecifiedImage: cfg.GetImage().GetUserSpecifiedImage(), ImageID: img.id,
		Labels: copyMap(cfg.GetLabels()), Annotations: copyMap(cfg.GetAnnotations()),
		LogPath: logPath, CRILogPath: cfg.GetLogPath(), Mounts: requested, Spec: spec, PidMode: int32(pidMode),
		CreatedAt: time.Now().UnixNano(), State: int32(runtimeapi.ContainerState_CONTAINER_CREATED),
	}, nil
}

// checkContainerConfig refuses the features a host process cannot have. Deliberately accepted, and why:
//   - seccomp RuntimeDefault (kubeadm's static pods ask for it): this runtime's default profile is no filter;
//     Localhost profiles are refused;
//   - resources.cpu_shares and similar weights: there are no cgroups here (cgroup v1 in nspawn); weights only
//     matter under contention and the kubelet keeps the pod cgroups itself. Hard limits are refused.
func checkContainerConfig(cfg *runtimeapi.ContainerConfig, who string) error {
	refuse := func(what string) error {
		return status.Errorf(codes.InvalidArgument, "%s: kubeha-lab-cri does not support %s", who, what)
	}
	sc := cfg.GetLinux().GetSecurityContext()
	switch {
	case sc.GetPrivileged():
		return refuse("privileged containers")
	case len(cfg.GetDevices()) > 0 || len(cfg.GetCDIDevices()) > 0:
		return refuse("devices")
	case cfg.GetTty() || cfg.GetStdin():
		return refuse("stdin or a tty")
	case sc.GetReadonlyRootfs():
		return refuse("a read-only root file system (containers share the host's)")
	case sc.GetRunAsUser() != nil && sc.GetRunAsUser().GetValue() != 0,
		sc.GetRunAsUsername() != "" && sc.GetRunAsUsername() != "root",
		sc.GetRunAsGroup() != nil && sc.GetRunAsGroup().GetValue() != 0,
		len(sc.GetSupplementalGroups()) > 0:
		return refuse("users, groups or supplemental groups other than root")
	case len(sc.GetCapabilities().GetAddCapabilities()) > 0 || len(sc.GetCapabilities().GetDropCapabilities()) > 0 ||
		len(sc.GetCapabilities().GetAddAmbientCapabilities()) > 0:
		return refuse("adding or dropping capabilities")
	case sc.GetSelinuxOptions() != nil && (sc.GetSelinuxOptions().GetType() != "" || sc.GetSelinuxOptions().GetLevel() != ""):
		return refuse("SELinux options")
	case sc.GetSeccomp() != nil && sc.GetSeccomp().GetProfileType() == runtimeapi.SecurityProfile_Localhost,
		sc.GetSeccompProfilePath() != "" && sc.GetSeccompProfilePath() != "unconfined" && sc.GetSeccompProfilePath() != "runtime/default":
		return refuse("localhost seccomp profiles")
	case sc.GetApparmor() != nil && sc.GetApparmor().GetProfileType() == runtimeapi.SecurityProfile_Localhost:
		return refuse("AppArmor profiles")
	case sc.GetNamespaceOptions().GetUsernsOptions() != nil && sc.GetNamespaceOptions().GetUsernsOptions().GetMode() != runtimeapi.NamespaceMode_NODE:
		return refuse("user namespaces")
	}
	if r := cfg.GetLinux().GetResources(); r != nil {
		if r.MemoryLimitInBytes > 0 || r.CpuQuota > 0 || r.MemorySwapLimitInBytes > 0 || len(r.HugepageLimits) > 0 && hugepagesLimited(r) {
			return refuse("resource limits (there are no cgroups to enforce them)")
		}
	}
	switch cfg.GetStopSignal() {
	case runtimeapi.Signal_RUNTIME_DEFAULT, runtimeapi.Signal_SIGTERM:
	default:
		return refuse(fmt.Sprintf("stop signal %v", cfg.GetStopSignal()))
	}
	return nil
}

func hugepagesLimited(r *runtimeapi.LinuxContainerResources) bool {
	for _, h := range r.HugepageLimits {
		if h.Limit > 0 {
			return true
		}
	}
	return false
}

// commandLine applies the Kubernetes rule: command replaces the image entrypoint (here: the program), args
// follow. A bare command[0] named like the image ("kube-apiserver" for .../kube-apiserver) is the image's
// program; any other bare name is looked up in the container's PATH. Returns argv and the file to execute.
func commandLine(cfg *runtimeapi.ContainerConfig, img *resolvedImage, env []string) ([]string, string, error) {
	if len(cfg.GetCommand()) == 0 {
		return append([]string{img.program}, cfg.GetArgs()...), img.program, nil
	}
	argv := append(append([]string{}, cfg.GetCommand()...), cfg.GetArgs()...)
	name := argv[0]
	switch {
	case strings.Contains(name, "/"):
		if !isExecutable(name) {
			return nil, "", fmt.Errorf("command %q is not an executable file", name)
		}
		return argv, name, nil
	case name == path.Base(img.repo):
		return argv, img.program, nil
	}
	for _, kv := range env {
		if dirs, ok := strings.CutPrefix(kv, "PATH="); ok {
			for _, d := range filepath.SplitList(dirs) {
				if p := filepath.Join(d, name); d != "" && isExecutable(p) {
					return argv, p, nil
				}
			}
		}
	}
	return nil, "", fmt.Errorf("command %q not found in the container's PATH", name)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// containerMounts returns the binds for the child: the sandbox's own files first (resolv.conf, /dev/shm),
// unless the kubelet mounts that path itself, then the kubelet's mounts, parents before children.
func containerMounts(sb *sandboxRecord, cfg *runtimeapi.ContainerConfig, who string) ([]mountSpec, error) {
	var out []mountSpec
	taken := map[string]bool{}
	for _, m := range cfg.GetMounts() {
		switch {
		case m.ContainerPath == "" || !filepath.IsAbs(m.ContainerPath):
			return nil, status.Errorf(codes.InvalidArgument, "%s: mount container path %q must be absolute", who, m.ContainerPath)
		case m.GetImage() != nil && m.GetImage().GetImage() != "":
			return nil, status.Errorf(codes.InvalidArgument, "%s: kubeha-lab-cri does not support image volumes (%s)", who, m.ContainerPath)
		case len(m.UidMappings) > 0 || len(m.GidMappings) > 0:
			return nil, status.Errorf(codes.InvalidArgument, "%s: kubeha-lab-cri does not support ID-mapped mounts (%s)", who, m.ContainerPath)
		case m.RecursiveReadOnly:
			return nil, status.Errorf(codes.InvalidArgument, "%s: kubeha-lab-cri does not support recursive read-only mounts (%s)", who, m.ContainerPath)
		case m.Propagation != runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
			return nil, status.Errorf(codes.InvalidArgument, "%s: kubeha-lab-cri supports private mount propagation only (%s: %v)", who, m.ContainerPath, m.Propagation)
		}
		if _, err := os.Stat(m.HostPath); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%s: mount host path %q: %v", who, m.HostPath, err)
		}
		taken[filepath.Clean(m.ContainerPath)] = true
	}
	if sb.ResolvConf != "" && !taken["/etc/resolv.conf"] {
		out = append(out, mountSpec{Host: sb.ResolvConf, Container: "/etc/resolv.conf", ReadOnly: true})
	}
	if sb.ShmDir != "" && !taken["/dev/shm"] {
		out = append(out, mountSpec{Host: sb.ShmDir, Container: "/dev/shm"})
	}
	var kubelet []mountSpec
	for _, m := range cfg.GetMounts() {
		kubelet = append(kubelet, mountSpec{Host: m.HostPath, Container: filepath.Clean(m.ContainerPath), ReadOnly: m.Readonly})
	}
	// A mount under another must come after it or it would be hidden.
	sort.SliceStable(kubelet, func(i, j int) bool {
		return strings.Count(kubelet[i].Container, "/") < strings.Count(kubelet[j].Container, "/")
	})
	return append(out, kubelet...), nil
}

func (s *server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	id := req.GetContainerId()
	s.mu.Lock()
	c, ok := s.containers[id]
	if !ok {
		s.mu.Unlock()
		return nil, status.Errorf(codes.NotFound, "container %q not found", id)
	}
	if c.State != int32(runtimeapi.ContainerState_CONTAINER_CREATED) {
		s.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "container %s is %v, not CREATED", id, runtimeapi.ContainerState(c.State))
	}
	// Marked running (without a process yet) so that a concurrent start is refused.
	c.State = int32(runtimeapi.ContainerState_CONTAINER_RUNNING)
	rec := *c
	s.mu.Unlock()

	p, err := s.spawn(&rec)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		c.State = int32(runtimeapi.ContainerState_CONTAINER_EXITED)
		c.ExitCode, c.Reason, c.Message = 128, "StartError", err.Error()
		c.FinishedAt = time.Now().UnixNano()
		s.persist()
		log.Printf("StartContainer %s (%s) failed: %v", id, c.Name, err)
		return nil, status.Errorf(codes.Unknown, "start container %s (%s): %v", id, c.Name, err)
	}
	c.proc, c.PID, c.PIDStart, c.StartedAt = p, p.pid, p.pidStart, p.started.UnixNano()
	s.persist()
	go s.watch(c, p)
	log.Printf("StartContainer %s (%s): pid %d", id, c.Name, p.pid)
	return &runtimeapi.StartContainerResponse{}, nil
}

// watch records the exit of a container's process.
func (s *server) watch(c *containerRecord, p *liveProcess) {
	code := p.wait()
	s.mu.Lock()
	c.State = int32(runtimeapi.ContainerState_CONTAINER_EXITED)
	c.ExitCode = code
	c.FinishedAt = time.Now().UnixNano()
	c.Reason = "Completed"
	if code != 0 {
		c.Reason = "Error"
	}
	s.persist()
	s.mu.Unlock()
	close(p.done)
	log.Printf("container %s (%s): pid %d exited with %d", c.ID, c.Name, p.pid, code)
}

func (s *server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	if err := s.stopContainer(ctx, req.GetContainerId(), req.GetTimeout()); err != nil {
		return nil, err
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// stopContainer sends SIGTERM, waits up to timeout seconds, then SIGKILLs; it returns once the exit is recorded.
// Stopping a container that is not running is not an error (the CRI makes StopContainer idempotent).
func (s *server) stopContainer(ctx context.Context, id string, timeout int64) error {
	s.mu.Lock()
	c, ok := s.containers[id]
	var p *liveProcess
	if ok && c.State == int32(runtimeapi.ContainerState_CONTAINER_RUNNING) {
		p = c.proc
	}
	s.mu.Unlock()
	if !ok {
		return status.Errorf(codes.NotFound, "container %q not found", id)
	}
	if p == nil {
		return nil
	}
	log.Printf("StopContainer %s (%s): pid %d, timeout %ds", id, c.Name, p.pid, timeout)
	if timeout > 0 {
		p.terminate()
		select {
		case <-p.done:
			return nil
		case <-time.After(time.Duration(timeout) * time.Second):
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	p.kill()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

func (s *server) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	if err := s.removeContainer(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (s *server) removeContainer(ctx context.Context, id string) error {
	if err := s.stopContainer(ctx, id, 0); err != nil {
		if status.Code(err) == codes.NotFound {
			return nil // already removed: idempotent
		}
		return err
	}
	s.mu.Lock()
	c, ok := s.containers[id]
	delete(s.containers, id)
	s.persist()
	s.mu.Unlock()
	if ok {
		// The log file belongs to the kubelet, which removes it with the pod's log directory.
		os.RemoveAll(filepath.Join(s.cfg.stateDir, "containers", id))
		log.Printf("RemoveContainer %s (%s)", id, c.Name)
	}
	return nil
}

func (c *containerRecord) metadata() *runtimeapi.ContainerMetadata {
	return &runtimeapi.ContainerMetadata{Name: c.Name, Attempt: c.Attempt}
}

func (c *containerRecord) imageSpec() *runtimeapi.ImageSpec {
	return &runtimeapi.ImageSpec{Image: c.Image, UserSpecifiedImage: c.UserSpecifiedImage}
}

func (s *server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[req.GetContainerId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "container %q not found", req.GetContainerId())
	}
	st := &runtimeapi.ContainerStatus{
		Id: c.ID, Metadata: c.metadata(), State: runtimeapi.ContainerState(c.State),
		CreatedAt: c.CreatedAt, StartedAt: c.StartedAt, FinishedAt: c.FinishedAt,
		Image: c.imageSpec(), ImageRef: c.ImageID, ImageId: c.ImageID,
		Labels: c.Labels, Annotations: c.Annotations, LogPath: c.LogPath,
		User: &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{Uid: 0, Gid: 0}},
	}
	if c.State == int32(runtimeapi.ContainerState_CONTAINER_EXITED) {
		st.ExitCode, st.Reason, st.Message = c.ExitCode, c.Reason, c.Message
	}
	for _, m := range c.Mounts {
		st.Mounts = append(st.Mounts, &runtimeapi.Mount{ContainerPath: m.Container, HostPath: m.Host, Readonly: m.ReadOnly})
	}
	return &runtimeapi.ContainerStatusResponse{Status: st}, nil
}

func (s *server) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f := req.GetFilter()
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &runtimeapi.ListContainersResponse{}
	for _, c := range s.containers {
		if f.GetId() != "" && !strings.HasPrefix(c.ID, f.GetId()) {
			continue
		}
		if f.GetPodSandboxId() != "" && !strings.HasPrefix(c.SandboxID, f.GetPodSandboxId()) {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != runtimeapi.ContainerState(c.State) {
			continue
		}
		if !labelsMatch(c.Labels, f.GetLabelSelector()) {
			continue
		}
		resp.Containers = append(resp.Containers, &runtimeapi.Container{
			Id: c.ID, PodSandboxId: c.SandboxID, Metadata: c.metadata(), Image: c.imageSpec(),
			ImageRef: c.ImageID, ImageId: c.ImageID, State: runtimeapi.ContainerState(c.State),
			CreatedAt: c.CreatedAt, Labels: c.Labels, Annotations: c.Annotations,
		})
	}
	sort.Slice(resp.Containers, func(i, j int) bool { return resp.Containers[i].CreatedAt < resp.Containers[j].CreatedAt })
	return resp, nil
}

// UpdateContainerResources is accepted and ignored: there are no cgroups to update (the lab's nodes run
// cgroup v1 inside nspawn and this runtime does not manage cgroups at all).
func (s *server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	s.mu.Lock()
	_, ok := s.containers[req.GetContainerId()]
	s.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "container %q not found", req.GetContainerId())
	}
	log.Printf("UpdateContainerResources %s: accepted, nothing to apply (no cgroups)", req.GetContainerId())
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

func (s *server) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	s.mu.Lock()
	c, ok := s.containers[req.GetContainerId()]
	var p *liveProcess
	if ok && c.State == int32(runtimeapi.ContainerState_CONTAINER_RUNNING) {
		p = c.proc
	}
	s.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "container %q not found", req.GetContainerId())
	}
	// The CRI lets a runtime refuse for a stopped container; then no new log file may be created.
	if p == nil || p.log == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s is not running", req.GetContainerId())
	}
	if err := p.log.reopen(); err != nil {
		return nil, status.Errorf(codes.Internal, "reopen %s: %v", c.LogPath, err)
	}
	log.Printf("ReopenContainerLog %s: %s", c.ID, c.LogPath)
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}
