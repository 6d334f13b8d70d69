package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The tests run the real server on a unix socket and talk to it with the real CRI client types. Container
// processes are real: /proc/self/exe is the test binary, whose init() (process.go) plays the `__run` child.

const apiserverImage = "registry.k8s.io/kube-apiserver:v1.36.3"

type labEnv struct {
	dir     string
	cfg     config
	program string // the fake kube-apiserver program
}

// newLabEnv writes an images file whose kube-apiserver "program" is a shell script that answers --version
// like the real one.
func newLabEnv(t *testing.T) *labEnv {
	t.Helper()
	dir := t.TempDir()
	e := &labEnv{dir: dir, program: filepath.Join(dir, "bin", "kube-apiserver")}
	must(t, os.MkdirAll(filepath.Dir(e.program), 0o755))
	must(t, os.WriteFile(e.program, []byte("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Kubernetes v1.36.3'; exit 0; fi\necho \"apiserver $*\"\n"), 0o755))
	images := map[string]string{"registry.k8s.io/kube-apiserver": e.program, "registry.k8s.io/pause": ""}
	data, _ := json.Marshal(images)
	imagesFile := filepath.Join(dir, "images.json")
	must(t, os.WriteFile(imagesFile, data, 0o644))
	e.cfg = config{
		stateDir:   filepath.Join(dir, "state"),
		imagesFile: imagesFile,
		cniConfDir: filepath.Join(dir, "cni"),
	}
	must(t, os.MkdirAll(e.cfg.cniConfDir, 0o755))
	return e
}

type labClient struct {
	srv *server
	rt  runtimeapi.RuntimeServiceClient
	img runtimeapi.ImageServiceClient
	g   *grpc.Server
}

// start serves a new server on the env's state dir. stop (also run at cleanup) abandons it like a dead runtime.
func (e *labEnv) start(t *testing.T) (*labClient, func()) {
	t.Helper()
	srv, err := newServer(e.cfg)
	must(t, err)
	sock := filepath.Join(t.TempDir(), "cri.sock")
	lis, err := listenUnix("unix://" + sock)
	must(t, err)
	g := newGRPCServer(srv)
	go g.Serve(lis)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}))
	must(t, err)
	c := &labClient{srv: srv, rt: runtimeapi.NewRuntimeServiceClient(conn), img: runtimeapi.NewImageServiceClient(conn), g: g}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			srv.abandon()
			conn.Close()
			g.Stop()
		}
	}
	t.Cleanup(stop)
	return c, stop
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: container processes get their own mount namespace")
	}
}

// waitFor polls cond every 20ms for at most limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hostPod is a sandbox config like the kubelet's for a static control-plane pod: host network, PID namespace
// per container, pod IPC namespace, seccomp RuntimeDefault.
func (e *labEnv) hostPod(name string, pid runtimeapi.NamespaceMode) *runtimeapi.PodSandboxConfig {
	uid := "uid-" + name
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "kube-system", Uid: uid},
		LogDirectory: filepath.Join(e.dir, "pods", "kube-system_"+name+"_"+uid),
		Labels:       map[string]string{"io.kubernetes.pod.name": name, "tier": "control-plane"},
		DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"192.0.2.53"}, Searches: []string{"lab.example"}},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: pid, Ipc: runtimeapi.NamespaceMode_POD},
			Seccomp:          &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
		}},
	}
}

// runPod starts a sandbox and removes it at cleanup (its IPC namespace and /dev/shm are mounts in the test's
// temporary directory).
func (c *labClient) runPod(t *testing.T, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	resp, err := c.rt.RunPodSandbox(ctx(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	must(t, err)
	id := resp.PodSandboxId
	c.srv.mu.Lock()
	sb := *c.srv.sandboxes[id]
	c.srv.mu.Unlock()
	t.Cleanup(func() {
		_, _ = c.rt.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
		releaseSandbox(&sb) // in case this server was stopped first
	})
	return id
}

// runHostPod pulls the program the tests run, then runs a host-network pod named name: the start of most
// tests. It returns the pod's config and its sandbox id.
func (c *labClient) runHostPod(t *testing.T, e *labEnv, name string, pid runtimeapi.NamespaceMode) (*runtimeapi.PodSandboxConfig, string) {
	t.Helper()
	c.pull(t, apiserverImage)
	pod := e.hostPod(name, pid)
	return pod, c.runPod(t, pod)
}

func (c *labClient) pull(t *testing.T, ref string) {
	t.Helper()
	_, err := c.img.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	must(t, err)
}

// shellContainer is a container of the apiserver image running /bin/sh -c script, with the kubelet's default
// masked and read-only paths.
func shellContainer(name, script string, pid runtimeapi.NamespaceMode, mounts ...*runtimeapi.Mount) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: apiserverImage},
		Command:  []string{"/bin/sh", "-c", script},
		Envs:     []*runtimeapi.KeyValue{{Key: "GREETING", Value: []byte("hello")}},
		LogPath:  name + "/0.log",
		Mounts:   mounts,
		Labels:   map[string]string{"io.kubernetes.container.name": name},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{CpuShares: 256, OomScoreAdj: -997},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: pid, Ipc: runtimeapi.NamespaceMode_POD},
				Seccomp:          &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
				MaskedPaths: []string{"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
					"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"},
				ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
			},
		},
	}
}

func (c *labClient) startContainer(t *testing.T, sandbox string, pod *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	resp, err := c.rt.CreateContainer(ctx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: sandbox, Config: cfg, SandboxConfig: pod})
	must(t, err)
	_, err = c.rt.StartContainer(ctx(t), &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId})
	must(t, err)
	return resp.ContainerId
}

func (c *labClient) status(t *testing.T, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	resp, err := c.rt.ContainerStatus(ctx(t), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	must(t, err)
	return resp.Status
}

func (c *labClient) waitExited(t *testing.T, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	var st *runtimeapi.ContainerStatus
	waitFor(t, 20*time.Second, "container "+id+" to exit", func() bool {
		st = c.status(t, id)
		return st.State == runtimeapi.ContainerState_CONTAINER_EXITED
	})
	return st
}

func readLog(t *testing.T, path string) string {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(data)
}

func waitLog(t *testing.T, path string, want ...string) string {
	t.Helper()
	var text string
	waitFor(t, 20*time.Second, fmt.Sprintf("%s to contain %q", path, want), func() bool {
		text = readLog(t, path)
		for _, w := range want {
			if !strings.Contains(text, w) {
				return false
			}
		}
		return true
	})
	return text
}
