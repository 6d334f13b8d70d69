// Command kubeha-lab-mirror serves the lab's own builds of Kubernetes and etcd in the upstream download layout
// (dl.k8s.io's release/vK/bin/linux/A/..., GitHub's etcd-io/etcd/releases/download/vE/...), so that kubeha
// installs the lab's hosts through the same download and checksum code as a real site with
// `spec.artifacts.mirror`. It is a static file server and nothing more: GET and HEAD of regular files below
// -root, 404 for anything else there, and it listens on loopback only (the files are the operator's own, and
// kubeha downloads them on the operator's machine).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	root := flag.String("root", "", "folder to serve (the build's mirror/)")
	listen := flag.String("listen", "127.0.0.1:18480", "loopback address and port to listen on")
	// Unused by the server itself: it puts the lab's service name into the command line, where kubeha finds a
	// mirror left by an earlier run when no service manager recorded it.
	flag.String("name", "", "the service name kubeha started it as")
	flag.Parse()
	if *root == "" {
		log.Fatal("kubeha-lab-mirror: -root is required")
	}
	if info, err := os.Stat(*root); err != nil || !info.IsDir() {
		log.Fatalf("kubeha-lab-mirror: -root %s is not a folder", *root)
	}
	listener, err := listenLoopback(*listen)
	if err != nil {
		log.Fatalf("kubeha-lab-mirror: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, listener, newHandler(*root, log.New(os.Stderr, "", log.LstdFlags|log.LUTC))); err != nil {
		log.Fatalf("kubeha-lab-mirror: %v", err)
	}
}

// listenLoopback listens on addr only if every address it names is a loopback address: an empty host (all
// interfaces) or any other address is refused before a socket is opened.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %v", addr, err)
	}
	if host == "" {
		return nil, fmt.Errorf("listen address %q names every interface; the mirror serves loopback only", addr)
	}
	ips := []net.IP{net.ParseIP(host)}
	if ips[0] == nil {
		// A name such as localhost: every address it resolves to must be loopback.
		resolved, err := net.LookupIP(host)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: %v", addr, err)
		}
		ips = resolved
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return nil, fmt.Errorf("listen address %q is not a loopback address; the mirror serves loopback only", addr)
		}
	}
	return net.Listen("tcp", addr)
}

// serve runs until ctx ends (SIGTERM), then lets requests in flight finish for a few seconds.
func serve(ctx context.Context, listener net.Listener, handler http.Handler) error {
	server := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- server.Serve(listener) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
