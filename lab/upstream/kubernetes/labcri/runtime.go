package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Runtime-wide calls: identity, readiness, configuration, and the calls the lab runtime refuses.
// Calls not written here at all (the alpha streaming lists, pod metrics, UpdatePodSandboxResources) answer
// Unimplemented through the embedded Unimplemented servers; the kubelet falls back to the unary lists.

func (s *server) Version(ctx context.Context, req *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		// Version is the version of the CRI client protocol the runtime speaks (what other runtimes answer).
		Version: "0.1.0", RuntimeName: "kubeha-lab-cri", RuntimeVersion: version, RuntimeApiVersion: "v1",
	}, nil
}

// Status: the runtime is ready once it serves; the network is ready, as containerd reports it, only while the
// CNI configuration directory holds a configuration (the kubelet keeps the node NotReady until then).
func (s *server) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	network := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if !hasCNIConfig(s.cfg.cniConfDir) {
		network.Status = false
		network.Reason = "NetworkPluginNotReady"
		network.Message = fmt.Sprintf("kubeha-lab-cri: no network config found in %s (*.conf, *.conflist, *.json)", s.cfg.cniConfDir)
	}
	return &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			{Type: runtimeapi.RuntimeReady, Status: true},
			network,
		}},
		RuntimeHandlers: []*runtimeapi.RuntimeHandler{{Name: "", Features: &runtimeapi.RuntimeHandlerFeatures{}}},
		Features:        &runtimeapi.RuntimeFeatures{},
	}, nil
}

func hasCNIConfig(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
			if !e.IsDir() {
				return true
			}
		}
	}
	return false
}

// RuntimeConfig: the kubelet takes its cgroup driver from the runtime. This runtime does not place processes
// in cgroups; cgroupfs is what the kubelet must use for its own pod cgroups on the lab's cgroup v1 nodes.
func (s *server) RuntimeConfig(ctx context.Context, req *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{
		CgroupDriver: runtimeapi.CgroupDriver_CGROUPFS,
	}}, nil
}

// UpdateRuntimeConfig records the pod CIDR; host-network pods get no addresses from it.
func (s *server) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	s.mu.Lock()
	changed := cidr != s.podCIDR
	s.podCIDR = cidr
	if changed {
		s.persist()
	}
	s.mu.Unlock()
	if changed {
		log.Printf("UpdateRuntimeConfig: pod CIDR %q", cidr)
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

func unsupported(call string) error {
	return status.Errorf(codes.Unimplemented, "%s: the kubeha lab runtime (kubeha-lab-cri) does not support it", call)
}

func (s *server) ExecSync(context.Context, *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	return nil, unsupported("ExecSync")
}

func (s *server) Exec(context.Context, *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	return nil, unsupported("Exec")
}

func (s *server) Attach(context.Context, *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	return nil, unsupported("Attach")
}

func (s *server) PortForward(context.Context, *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	return nil, unsupported("PortForward")
}

func (s *server) CheckpointContainer(context.Context, *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	return nil, unsupported("CheckpointContainer")
}

// GetContainerEvents is only used by the alpha EventedPLEG; without it the kubelet relists (generic PLEG).
func (s *server) GetContainerEvents(*runtimeapi.GetEventsRequest, grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	return unsupported("GetContainerEvents")
}
