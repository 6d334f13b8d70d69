// Command kubeha-lab-cri is the kubeha test lab's own CRI runtime. The lab runs the real kubelet inside
// systemd-nspawn machines, where real containers cannot run (no image registry, cgroup v1), so this runtime
// runs kubeadm's static pods (kube-apiserver, kube-controller-manager, kube-scheduler) as host processes.
//
// It is a named stand-in and deliberately strict: whatever it cannot do faithfully is refused with a gRPC
// error that says so, never faked. See the other files of this package, one concern each:
//
//	images.go    the image store (images.json: repository -> host programs, one picked per tag by --version)
//	sandbox.go   pod sandboxes (records plus a pod IPC namespace and /dev/shm, no process)
//	container.go container records and their CRI calls
//	spawn.go     starting and stopping a container's process (runtime side)
//	process.go   the re-executed child (`__run SPECFILE`) that sets up mounts and execs the program
//	logs.go      the CRI log format writer
//	state.go     persistence of sandboxes and containers under --state-dir
//	stats.go     /proc based statistics
//	runtime.go   Version, Status, RuntimeConfig and the calls the lab refuses
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// version is the runtime's own version (reported by Version and --version).
const version = "0.1.0"

type config struct {
	listen     string
	stateDir   string
	imagesFile string
	cniConfDir string
}

func main() {
	var cfg config
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.StringVar(&cfg.listen, "listen", "unix:///run/kubeha-lab-cri/cri.sock", "CRI endpoint to serve")
	flag.StringVar(&cfg.stateDir, "state-dir", "/var/lib/kubeha-lab-cri", "directory for persisted state")
	flag.StringVar(&cfg.imagesFile, "images", "/etc/kubeha-lab-cri/images.json", "image repository -> host program(s) map")
	flag.StringVar(&cfg.cniConfDir, "cni-conf-dir", "/etc/cni/net.d", "CNI configuration directory (for NetworkReady)")
	flag.Parse()
	if *showVersion {
		fmt.Printf("kubeha-lab-cri %s\n", version)
		return
	}
	log.SetOutput(os.Stderr)
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	srv, err := newServer(cfg)
	if err != nil {
		log.Fatalf("kubeha-lab-cri: %v", err)
	}
	lis, err := listenUnix(cfg.listen)
	if err != nil {
		log.Fatalf("kubeha-lab-cri: %v", err)
	}
	g := newGRPCServer(srv)

	// On SIGTERM/SIGINT stop serving; container processes then die with us (Pdeathsig, see spawn.go).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigs
		log.Printf("received %v, stopping", s)
		srv.abandon()
		g.Stop()
	}()
	log.Printf("kubeha-lab-cri %s serving on %s (state %s, images %s)", version, cfg.listen, cfg.stateDir, cfg.imagesFile)
	if err := g.Serve(lis); err != nil {
		log.Fatalf("kubeha-lab-cri: serve: %v", err)
	}
}

func newGRPCServer(srv *server) *grpc.Server {
	g := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(g, srv)
	runtimeapi.RegisterImageServiceServer(g, srv)
	return g
}

// listenUnix accepts only unix:// endpoints: the kubelet talks to local runtimes over a unix socket.
func listenUnix(endpoint string) (net.Listener, error) {
	path, ok := strings.CutPrefix(endpoint, "unix://")
	if !ok || path == "" {
		return nil, fmt.Errorf("--listen %q: only unix:///path endpoints are supported", endpoint)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	// A socket left by an earlier run would make bind fail.
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		lis.Close()
		return nil, err
	}
	return lis, nil
}
