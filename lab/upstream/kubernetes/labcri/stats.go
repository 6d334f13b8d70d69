package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Statistics come from /proc/PID of a running container's main process, since there are no cgroups to read:
// CPU is utime+stime (cumulative), memory the resident set. Usage by the program's own children is not
// counted. usage_nano_cores is left unset: the kubelet derives it from successive cumulative samples.
// Containers that are not running have no statistics.

// clockTicks is USER_HZ, 100 on every Linux architecture Kubernetes supports (sysconf needs cgo).
const clockTicks = 100

// readProcStat returns the process start time (field 22) and utime+stime in ticks (fields 14 and 15).
func readProcStat(pid int) (start uint64, cpuTicks uint64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may contain spaces and parentheses: fields are counted after the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, utime + stime, err
}

func readVmRSS(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// containerStats builds the stats of c (callers hold s.mu); nil usage when c is not running or its process
// is gone between the state check and the read.
func containerStats(c *containerRecord) *runtimeapi.ContainerStats {
	st := &runtimeapi.ContainerStats{Attributes: &runtimeapi.ContainerAttributes{
		Id: c.ID, Metadata: c.metadata(), Labels: c.Labels, Annotations: c.Annotations,
	}}
	if c.State != int32(runtimeapi.ContainerState_CONTAINER_RUNNING) || c.proc == nil {
		return st
	}
	now := time.Now().UnixNano()
	start, ticks, err := readProcStat(c.PID)
	if err != nil || start != c.PIDStart {
		return st
	}
	st.Cpu = &runtimeapi.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: ticks * (1e9 / clockTicks)}}
	if rss, err := readVmRSS(c.PID); err == nil {
		st.Memory = &runtimeapi.MemoryUsage{
			Timestamp:       now,
			WorkingSetBytes: &runtimeapi.UInt64Value{Value: rss},
			RssBytes:        &runtimeapi.UInt64Value{Value: rss},
			UsageBytes:      &runtimeapi.UInt64Value{Value: rss},
		}
	}
	return st
}

func (s *server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[req.GetContainerId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "container %q not found", req.GetContainerId())
	}
	return &runtimeapi.ContainerStatsResponse{Stats: containerStats(c)}, nil
}

func (s *server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	f := req.GetFilter()
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &runtimeapi.ListContainerStatsResponse{}
	for _, c := range s.containers {
		// The CRI: stats of running containers.
		if c.State != int32(runtimeapi.ContainerState_CONTAINER_RUNNING) {
			continue
		}
		if f.GetId() != "" && !strings.HasPrefix(c.ID, f.GetId()) ||
			f.GetPodSandboxId() != "" && !strings.HasPrefix(c.SandboxID, f.GetPodSandboxId()) ||
			!labelsMatch(c.Labels, f.GetLabelSelector()) {
			continue
		}
		resp.Stats = append(resp.Stats, containerStats(c))
	}
	return resp, nil
}

// sandboxStats sums its running containers (callers hold s.mu).
func (s *server) sandboxStats(sb *sandboxRecord) *runtimeapi.PodSandboxStats {
	linux := &runtimeapi.LinuxPodSandboxStats{}
	var cpu, mem uint64
	haveCPU, haveMem := false, false
	for _, c := range s.containers {
		if c.SandboxID != sb.ID || c.State != int32(runtimeapi.ContainerState_CONTAINER_RUNNING) {
			continue
		}
		cs := containerStats(c)
		linux.Containers = append(linux.Containers, cs)
		if cs.Cpu != nil {
			cpu, haveCPU = cpu+cs.Cpu.UsageCoreNanoSeconds.Value, true
		}
		if cs.Memory != nil {
			mem, haveMem = mem+cs.Memory.WorkingSetBytes.Value, true
		}
	}
	now := time.Now().UnixNano()
	if haveCPU {
		linux.Cpu = &runtimeapi.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: cpu}}
	}
	if haveMem {
		linux.Memory = &runtimeapi.MemoryUsage{Timestamp: now, WorkingSetBytes: &runtimeapi.UInt64Value{Value: mem}}
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: sb.ID, Metadata: sb.metadata(), Labels: sb.Labels, Annotations: sb.Annotations},
		Linux:      linux,
	}
}

func (s *server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb, ok := s.sandboxes[req.GetPodSandboxId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "pod sandbox %q not found", req.GetPodSandboxId())
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: s.sandboxStats(sb)}, nil
}

func (s *server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	f := req.GetFilter()
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &runtimeapi.ListPodSandboxStatsResponse{}
	for _, sb := range s.sandboxes {
		if !sb.Ready || f.GetId() != "" && !strings.HasPrefix(sb.ID, f.GetId()) || !labelsMatch(sb.Labels, f.GetLabelSelector()) {
			continue
		}
		resp.Stats = append(resp.Stats, s.sandboxStats(sb))
	}
	return resp, nil
}
