package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestImages(t *testing.T) {
	e := newLabEnv(t)
	c, _ := e.start(t)
	spec := func(ref string) *runtimeapi.ImageSpec { return &runtimeapi.ImageSpec{Image: ref} }

	st, err := c.img.ImageStatus(ctx(t), &runtimeapi.ImageStatusRequest{Image: spec(apiserverImage)})
	must(t, err)
	if st.Image != nil {
		t.Fatalf("image present before any pull: %v", st.Image)
	}
	pulled, err := c.img.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: spec(apiserverImage)})
	must(t, err)
	st, err = c.img.ImageStatus(ctx(t), &runtimeapi.ImageStatusRequest{Image: spec(apiserverImage)})
	must(t, err)
	if st.Image == nil || st.Image.Id != pulled.ImageRef || st.Image.RepoTags[0] != apiserverImage || st.Image.Pinned {
		t.Fatalf("after pull: status %v, pulled %s", st.Image, pulled.ImageRef)
	}
	byID, err := c.img.ImageStatus(ctx(t), &runtimeapi.ImageStatusRequest{Image: spec(pulled.ImageRef)})
	must(t, err)
	if byID.Image == nil || byID.Image.Id != pulled.ImageRef {
		t.Fatalf("status by id: %v", byID.Image)
	}
	again, err := c.img.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: spec(apiserverImage)})
	must(t, err)
	if again.ImageRef != pulled.ImageRef {
		t.Fatalf("image id not stable: %s then %s", pulled.ImageRef, again.ImageRef)
	}
	c.pull(t, "registry.k8s.io/pause:3.10.1")
	list, err := c.img.ListImages(ctx(t), &runtimeapi.ListImagesRequest{})
	must(t, err)
	if len(list.Images) != 2 {
		t.Fatalf("ListImages: %v", list.Images)
	}
	for _, img := range list.Images {
		if img.RepoTags[0] == "registry.k8s.io/pause:3.10.1" && !img.Pinned {
			t.Fatalf("sandbox-only image not pinned: %v", img)
		}
	}

	_, err = c.img.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: spec("registry.k8s.io/etcd:3.6.16-0")})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "registry.k8s.io/etcd:3.6.16-0") || !strings.Contains(err.Error(), e.cfg.imagesFile) {
		t.Fatalf("unknown repository: %v", err)
	}
	_, err = c.img.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: spec("registry.k8s.io/kube-apiserver:v1.35.0")})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "Kubernetes v1.36.3") || !strings.Contains(err.Error(), "version v1.35.0") {
		t.Fatalf("version mismatch: %v", err)
	}
	// v1.36.30 contains v1.36.3 as a substring but is another version.
	_, err = c.img.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: spec("registry.k8s.io/kube-apiserver:v1.36")})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("tag that is only a prefix of the version: %v", err)
	}

	// A program replaced by another version makes the pulled image absent (the cache follows the mtime).
	must(t, os.WriteFile(e.program, []byte("#!/bin/sh\necho 'Kubernetes v1.37.0'\n"), 0o755))
	later := time.Now().Add(time.Hour) // a new mtime even on coarse-grained file systems
	must(t, os.Chtimes(e.program, later, later))
	st, err = c.img.ImageStatus(ctx(t), &runtimeapi.ImageStatusRequest{Image: spec(apiserverImage)})
	must(t, err)
	if st.Image != nil {
		t.Fatalf("image still present after its program changed version: %v", st.Image)
	}

	_, err = c.img.RemoveImage(ctx(t), &runtimeapi.RemoveImageRequest{Image: spec("registry.k8s.io/pause:3.10.1")})
	must(t, err)
	st, err = c.img.ImageStatus(ctx(t), &runtimeapi.ImageStatusRequest{Image: spec("registry.k8s.io/pause:3.10.1")})
	must(t, err)
	if st.Image != nil {
		t.Fatalf("image present after RemoveImage: %v", st.Image)
	}
	fs, err := c.img.ImageFsInfo(ctx(t), &runtimeapi.ImageFsInfoRequest{})
	must(t, err)
	if len(fs.ImageFilesystems) != 1 || fs.ImageFilesystems[0].UsedBytes.Value == 0 || fs.ImageFilesystems[0].FsId.Mountpoint != e.cfg.stateDir {
		t.Fatalf("ImageFsInfo: %v", fs)
	}
}

func TestSandboxRefusesPodNetwork(t *testing.T) {
	e := newLabEnv(t)
	c, _ := e.start(t)
	pod := e.hostPod("web", runtimeapi.NamespaceMode_CONTAINER)
	pod.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_POD
	_, err := c.rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: pod})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "kubeha-lab-cri runs host-network pods only (pod kube-system/web)") {
		t.Fatalf("pod-network sandbox: %v", err)
	}
	pod = e.hostPod("shared", runtimeapi.NamespaceMode_POD)
	_, err = c.rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: pod})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("shared PID namespace: %v", err)
	}
	list, err := c.rt.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{})
	must(t, err)
	if len(list.Items) != 0 {
		t.Fatalf("refused sandboxes were recorded: %v", list.Items)
	}
}

var criLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr) [FP] `)

func TestContainerLogsAndStatus(t *testing.T) {
	needRoot(t)
	e := newLabEnv(t)
	c, _ := e.start(t)
	pod, sb := c.runHostPod(t, e, "kube-apiserver", runtimeapi.NamespaceMode_CONTAINER)
	// $$ is 1 in a PID namespace of its own; resolv.conf is the pod's; the kubelet's masks are in place.
	script := `echo hello; echo err >&2; echo "pid=$$ greeting=$GREETING"; grep nameserver /etc/resolv.conf; ` +
		`[ -s /proc/kcore ] || echo kcore-masked; echo x 2>/dev/null >/proc/sys/kernel/hostname || echo sys-ro; sleep 30`
	id := c.startContainer(t, sb, pod, shellContainer("kube-apiserver", script, runtimeapi.NamespaceMode_CONTAINER))

	st := c.status(t, id)
	logPath := filepath.Join(pod.LogDirectory, "kube-apiserver", "0.log")
	if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING || st.LogPath != logPath || st.StartedAt == 0 || st.ImageRef == "" ||
		st.Image.Image != apiserverImage || st.Labels["io.kubernetes.container.name"] != "kube-apiserver" {
		t.Fatalf("status of a running container: %v", st)
	}
	text := waitLog(t, logPath, " stdout F hello\n", " stderr F err\n", "stdout F pid=1 greeting=hello\n",
		"stdout F nameserver 192.0.2.53\n", "stdout F kcore-masked\n", "stdout F sys-ro\n")
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if !criLine.MatchString(line) {
			t.Fatalf("not a CRI log line: %q", line)
		}
	}

	stats, err := c.rt.ContainerStats(ctx(t), &runtimeapi.ContainerStatsRequest{ContainerId: id})
	must(t, err)
	if stats.Stats.Cpu == nil || stats.Stats.Memory == nil || stats.Stats.Memory.WorkingSetBytes.Value == 0 {
		t.Fatalf("stats of a running container: %v", stats.Stats)
	}
	running, err := c.rt.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		PodSandboxId: sb, State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
		LabelSelector: map[string]string{"io.kubernetes.container.name": "kube-apiserver"}}})
	must(t, err)
	if len(running.Containers) != 1 || running.Containers[0].Id != id {
		t.Fatalf("ListContainers running: %v", running.Containers)
	}

	// Log rotation: the kubelet renames the file and asks for a new one.
	must(t, os.Rename(logPath, logPath+".1"))
	_, err = c.rt.ReopenContainerLog(ctx(t), &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
	must(t, err)
	if _, err := os.Stat(logPath); err != nil {
		t.Fatalf("no new log file after ReopenContainerLog: %v", err)
	}

	// sh is the init of its PID namespace and has no TERM handler, so only the SIGKILL after the timeout ends it.
	_, err = c.rt.StopContainer(ctx(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1})
	must(t, err)
	st = c.status(t, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 || st.Reason != "Error" || st.FinishedAt < st.StartedAt {
		t.Fatalf("status after stop: %v", st)
	}
	_, err = c.rt.ReopenContainerLog(ctx(t), &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
	if err == nil {
		t.Fatal("ReopenContainerLog of an exited container succeeded")
	}
	_, err = c.rt.RemoveContainer(ctx(t), &runtimeapi.RemoveContainerRequest{ContainerId: id})
	must(t, err)
	if _, err := c.rt.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: id}); status.Code(err) != codes.NotFound {
		t.Fatalf("status of a removed container: %v", err)
	}
}

func TestCommandDefaultsToImageProgram(t *testing.T) {
	needRoot(t)
	e := newLabEnv(t)
	c, _ := e.start(t)
	pod, sb := c.runHostPod(t, e, "kube-apiserver", runtimeapi.NamespaceMode_CONTAINER)
	cfg := shellContainer("kube-apiserver", "", runtimeapi.NamespaceMode_CONTAINER)
	cfg.Command, cfg.Args = []string{"kube-apiserver"}, []string{"--secure-port=6443"}
	id := c.startContainer(t, sb, pod, cfg)
	st := c.waitExited(t, id)
	if st.ExitCode != 0 || st.Reason != "Completed" {
		t.Fatalf("status: %v", st)
	}
	waitLog(t, st.LogPath, "stdout F apiserver --secure-port=6443\n")
}

func TestBindMountWithOtherContainerPath(t *testing.T) {
	needRoot(t)
	e := newLabEnv(t)
	c, _ := e.start(t)
	pod, sb := c.runHostPod(t, e, "kube-controller-manager", runtimeapi.NamespaceMode_NODE)
	hostDir := filepath.Join(e.dir, "host", "pki")
	must(t, os.MkdirAll(hostDir, 0o755))
	must(t, os.WriteFile(filepath.Join(hostDir, "ca.crt"), []byte("the-ca"), 0o644))
	hostFile := filepath.Join(e.dir, "host", "termination-log")
	must(t, os.WriteFile(hostFile, nil, 0o644))
	ctrDir := filepath.Join(e.dir, "ctr", "etc", "kubernetes", "pki") // absent on the host: created as mount point
	ctrFile := filepath.Join(e.dir, "ctr", "dev", "termination-log")
	script := "cat " + ctrDir + "/ca.crt; echo; touch " + ctrDir + "/new 2>/dev/null || echo read-only; echo done > " + ctrFile
	cfg := shellContainer("kcm", script, runtimeapi.NamespaceMode_NODE,
		&runtimeapi.Mount{HostPath: hostDir, ContainerPath: ctrDir, Readonly: true},
		&runtimeapi.Mount{HostPath: hostFile, ContainerPath: ctrFile})
	id := c.startContainer(t, sb, pod, cfg)
	st := c.waitExited(t, id)
	if st.ExitCode != 0 || len(st.Mounts) != 2 || st.Mounts[0].HostPath != hostDir || !st.Mounts[0].Readonly {
		t.Fatalf("status: %v", st)
	}
	waitLog(t, st.LogPath, "stdout F the-ca\n", "stdout F read-only\n")
	if data, _ := os.ReadFile(hostFile); string(data) != "done\n" {
		t.Fatalf("write through the file bind mount did not reach the host file: %q", data)
	}
	// The binds lived in the container's mount namespace only.
	if entries, _ := os.ReadDir(ctrDir); len(entries) != 0 {
		t.Fatalf("the bind mount leaked to the host: %v", entries)
	}

	// Refusals: a missing host path, a privileged container, devices.
	bad := shellContainer("bad", "true", runtimeapi.NamespaceMode_NODE, &runtimeapi.Mount{HostPath: filepath.Join(e.dir, "nope"), ContainerPath: "/x"})
	privileged := shellContainer("priv", "true", runtimeapi.NamespaceMode_NODE)
	privileged.Linux.SecurityContext.Privileged = true
	devices := shellContainer("dev", "true", runtimeapi.NamespaceMode_NODE)
	devices.Devices = []*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/dev/x", Permissions: "rw"}}
	for _, cfg := range []*runtimeapi.ContainerConfig{bad, privileged, devices} {
		_, err := c.rt.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: sb, Config: cfg, SandboxConfig: pod})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("container %s: want InvalidArgument, got %v", cfg.Metadata.Name, err)
		}
	}
}

func TestStopKillsProcessIgnoringSIGTERM(t *testing.T) {
	needRoot(t)
	e := newLabEnv(t)
	c, _ := e.start(t)
	pod, sb := c.runHostPod(t, e, "kube-scheduler", runtimeapi.NamespaceMode_NODE)

	stubborn := c.startContainer(t, sb, pod, shellContainer("stubborn", `trap "" TERM; echo ready; while :; do sleep 1; done`, runtimeapi.NamespaceMode_NODE))
	waitLog(t, c.status(t, stubborn).LogPath, "stdout F ready\n")
	began := time.Now()
	_, err := c.rt.StopContainer(ctx(t), &runtimeapi.StopContainerRequest{ContainerId: stubborn, Timeout: 2})
	must(t, err)
	if took := time.Since(began); took < 2*time.Second {
		t.Fatalf("StopContainer returned after %v, before its 2s timeout", took)
	}
	if st := c.status(t, stubborn); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Fatalf("status after stop: %v", st)
	}

	polite := c.startContainer(t, sb, pod, shellContainer("polite", `echo ready; exec sleep 30`, runtimeapi.NamespaceMode_NODE))
	waitLog(t, c.status(t, polite).LogPath, "stdout F ready\n")
	_, err = c.rt.StopContainer(ctx(t), &runtimeapi.StopContainerRequest{ContainerId: polite, Timeout: 30})
	must(t, err)
	if st := c.status(t, polite); st.ExitCode != 143 {
		t.Fatalf("a process that honours SIGTERM: %v", st)
	}
	// StopPodSandbox leaves the sandbox NOTREADY.
	_, err = c.rt.StopPodSandbox(ctx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb})
	must(t, err)
	ps, err := c.rt.PodSandboxStatus(ctx(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb})
	must(t, err)
	if ps.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("sandbox after stop: %v", ps.Status)
	}
}

func TestNetworkReadyFollowsCNIConfig(t *testing.T) {
	e := newLabEnv(t)
	c, _ := e.start(t)
	network := func() *runtimeapi.RuntimeCondition {
		resp, err := c.rt.Status(ctx(t), &runtimeapi.StatusRequest{})
		must(t, err)
		for _, cond := range resp.Status.Conditions {
			if cond.Type == runtimeapi.RuntimeReady && !cond.Status {
				t.Fatalf("runtime not ready: %v", cond)
			}
			if cond.Type == runtimeapi.NetworkReady {
				return cond
			}
		}
		t.Fatal("no NetworkReady condition")
		return nil
	}
	if n := network(); n.Status || n.Reason != "NetworkPluginNotReady" || !strings.Contains(n.Message, e.cfg.cniConfDir) {
		t.Fatalf("without CNI config: %v", n)
	}
	must(t, os.WriteFile(filepath.Join(e.cfg.cniConfDir, "README"), []byte("not a config"), 0o644))
	if n := network(); n.Status {
		t.Fatalf("a non-config file made the network ready: %v", n)
	}
	must(t, os.WriteFile(filepath.Join(e.cfg.cniConfDir, "10-lab.conflist"), []byte(`{"cniVersion":"1.0.0","name":"lab","plugins":[]}`), 0o644))
	if n := network(); !n.Status {
		t.Fatalf("with a conflist: %v", n)
	}

	v, err := c.rt.Version(ctx(t), &runtimeapi.VersionRequest{})
	must(t, err)
	if v.RuntimeName != "kubeha-lab-cri" || v.RuntimeApiVersion != "v1" || v.RuntimeVersion != version {
		t.Fatalf("Version: %v", v)
	}
	rc, err := c.rt.RuntimeConfig(ctx(t), &runtimeapi.RuntimeConfigRequest{})
	must(t, err)
	if rc.Linux.CgroupDriver != runtimeapi.CgroupDriver_CGROUPFS {
		t.Fatalf("RuntimeConfig: %v", rc)
	}
	_, err = c.rt.ExecSync(ctx(t), &runtimeapi.ExecSyncRequest{ContainerId: "x", Cmd: []string{"true"}})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "lab runtime") {
		t.Fatalf("ExecSync: %v", err)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	needRoot(t)
	e := newLabEnv(t)
	first, stopFirst := e.start(t)
	pod, sb := first.runHostPod(t, e, "kube-apiserver", runtimeapi.NamespaceMode_CONTAINER)
	done := first.startContainer(t, sb, pod, shellContainer("done", "exit 3", runtimeapi.NamespaceMode_CONTAINER))
	first.waitExited(t, done)
	running := first.startContainer(t, sb, pod, shellContainer("running", "echo up; sleep 30", runtimeapi.NamespaceMode_CONTAINER))
	first.srv.mu.Lock()
	pid, pidStart := first.srv.containers[running].PID, first.srv.containers[running].PIDStart
	first.srv.mu.Unlock()
	waitLog(t, first.status(t, running).LogPath, "stdout F up\n")
	stopFirst() // the test process lives on, so the container process does too: the new runtime must deal with it

	second, _ := e.start(t)
	if st := second.status(t, done); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 3 || st.Reason != "Error" {
		t.Fatalf("exited container after restart: %v", st)
	}
	st := second.status(t, running)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 255 || st.Reason != "runtime restarted" {
		t.Fatalf("running container after restart: %v", st)
	}
	waitFor(t, 10*time.Second, "the orphaned process to be killed", func() bool {
		start, _, err := readProcStat(pid)
		return err != nil || start != pidStart || isZombie(pid)
	})
	list, err := second.rt.ListPodSandbox(ctx(t), &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}})
	must(t, err)
	if len(list.Items) != 1 || list.Items[0].Id != sb || list.Items[0].Metadata.Name != "kube-apiserver" {
		t.Fatalf("sandboxes after restart: %v", list.Items)
	}
	_, err = second.rt.RemovePodSandbox(ctx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb})
	must(t, err)
	all, err := second.rt.ListContainers(ctx(t), &runtimeapi.ListContainersRequest{})
	must(t, err)
	if len(all.Containers) != 0 {
		t.Fatalf("containers left after RemovePodSandbox: %v", all.Containers)
	}
}

func isZombie(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// Every new pod gets an IPC namespace, made on a locked OS thread that then exits. A container process dies
// with the thread that forked it (Pdeathsig), so no fork may ever run on such a thread: on the lab, the
// flannel pods' sandboxes SIGKILLed kube-apiserver and kube-controller-manager of the static pods started
// before them (exit 137), and the restarted API server refused the cluster admin until its caches filled.
func TestContainersOutliveLaterSandboxes(t *testing.T) {
	needRoot(t)
	e := newLabEnv(t)
	c, _ := e.start(t)
	var running []string
	for i := 0; i < 24; i++ {
		name := fmt.Sprintf("pod-%d", i)
		pod, sb := c.runHostPod(t, e, name, runtimeapi.NamespaceMode_CONTAINER)
		id := c.startContainer(t, sb, pod, shellContainer(name, `echo ready; exec sleep 120`, runtimeapi.NamespaceMode_CONTAINER))
		waitLog(t, c.status(t, id).LogPath, "stdout F ready\n")
		running = append(running, id)
		for _, earlier := range running {
			if st := c.status(t, earlier); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
				t.Fatalf("after %d later pods, container %s is %v (exit %d): a sandbox's thread took it down", i, earlier, st.State, st.ExitCode)
			}
		}
	}
	for _, id := range running {
		_, err := c.rt.StopContainer(ctx(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1})
		must(t, err)
	}
}
