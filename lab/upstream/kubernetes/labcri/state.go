package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The runtime keeps its sandboxes and containers in memory and writes them, whole, to state.json after every
// change, so that a restarted runtime can still tell the kubelet about earlier sandboxes and containers
// (the kubelet decides what to recreate from what the runtime reports).

type sandboxRecord struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	UID            string            `json:"uid"`
	Namespace      string            `json:"namespace"`
	Attempt        uint32            `json:"attempt"`
	Labels         map[string]string `json:"labels,omitempty"`
	Annotations    map[string]string `json:"annotations,omitempty"`
	LogDirectory   string            `json:"logDirectory"`
	CreatedAt      int64             `json:"createdAt"`
	Ready          bool              `json:"ready"`
	PidMode        int32             `json:"pidMode"`
	IpcMode        int32             `json:"ipcMode"`
	IPCNamespace   string            `json:"ipcNamespace,omitempty"` // bind-mounted pod IPC namespace
	ShmDir         string            `json:"shmDir,omitempty"`       // the pod's /dev/shm tmpfs
	ResolvConf     string            `json:"resolvConf,omitempty"`   // written from the pod's DNS config
	RuntimeHandler string            `json:"runtimeHandler,omitempty"`
}

type containerRecord struct {
	ID                 string            `json:"id"`
	SandboxID          string            `json:"sandboxId"`
	Name               string            `json:"name"`
	Attempt            uint32            `json:"attempt"`
	Image              string            `json:"image"`
	UserSpecifiedImage string            `json:"userSpecifiedImage,omitempty"`
	ImageID            string            `json:"imageId"`
	Labels             map[string]string `json:"labels,omitempty"`
	Annotations        map[string]string `json:"annotations,omitempty"`
	LogPath            string            `json:"logPath"` // absolute: sandbox log_directory + container log_path
	CRILogPath         string            `json:"criLogPath"`
	Mounts             []mountSpec       `json:"mounts,omitempty"` // as requested by the kubelet (for status)
	Spec               childSpec         `json:"spec"`
	PidMode            int32             `json:"pidMode"`
	CreatedAt          int64             `json:"createdAt"`
	StartedAt          int64             `json:"startedAt,omitempty"`
	FinishedAt         int64             `json:"finishedAt,omitempty"`
	State              int32             `json:"state"`
	ExitCode           int32             `json:"exitCode"`
	Reason             string            `json:"reason,omitempty"`
	Message            string            `json:"message,omitempty"`
	PID                int               `json:"pid,omitempty"`
	PIDStart           uint64            `json:"pidStart,omitempty"` // /proc/PID/stat start time, to recognise the process

	proc *liveProcess // the running process, only in the runtime that started it
}

type persistedState struct {
	Sandboxes  []*sandboxRecord   `json:"sandboxes"`
	Containers []*containerRecord `json:"containers"`
	Pulled     []string           `json:"pulled"`
	PodCIDR    string             `json:"podCIDR,omitempty"`
}

type server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	cfg    config
	images *imageStore

	mu         sync.Mutex
	abandoned  bool // set by abandon: this runtime no longer owns the state dir
	sandboxes  map[string]*sandboxRecord
	containers map[string]*containerRecord
	podCIDR    string
}

func newServer(cfg config) (*server, error) {
	for _, d := range []string{cfg.stateDir, filepath.Join(cfg.stateDir, "sandboxes"), filepath.Join(cfg.stateDir, "containers")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	images, err := loadImageStore(cfg.imagesFile)
	if err != nil {
		return nil, err
	}
	s := &server{cfg: cfg, images: images, sandboxes: map[string]*sandboxRecord{}, containers: map[string]*containerRecord{}}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *server) stateFile() string { return filepath.Join(s.cfg.stateDir, "state.json") }

// load reads state.json and reconciles it with reality: a container this runtime no longer supervises cannot be
// reported as running.
func (s *server) load() error {
	data, err := os.ReadFile(s.stateFile())
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var st persistedState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("%s: %w", s.stateFile(), err)
	}
	now := time.Now().UnixNano()
	for _, sb := range st.Sandboxes {
		// After a reboot the pod IPC namespace and /dev/shm mounts are gone: the sandbox is no longer intact.
		if sb.Ready && !sandboxMountsIntact(sb) {
			log.Printf("sandbox %s (%s/%s): its namespace mounts are gone, reporting it NOTREADY", sb.ID, sb.Namespace, sb.Name)
			sb.Ready = false
		}
		s.sandboxes[sb.ID] = sb
	}
	for _, c := range st.Containers {
		if c.State == int32(runtimeapi.ContainerState_CONTAINER_RUNNING) {
			// Container processes are children of the runtime and get SIGKILL when it dies (spawn.go). Should one
			// still be alive (the same PID with the same start time), it is killed: its logs went to pipes of the
			// dead runtime and nothing could wait for it.
			if c.PID > 0 {
				if start, _, err := readProcStat(c.PID); err == nil && start == c.PIDStart {
					log.Printf("container %s: killing orphaned process %d left by an earlier runtime", c.ID, c.PID)
					_ = syscall.Kill(-c.PID, syscall.SIGKILL)
					_ = syscall.Kill(c.PID, syscall.SIGKILL)
				}
			}
			c.State = int32(runtimeapi.ContainerState_CONTAINER_EXITED)
			c.ExitCode = 255
			c.Reason = "runtime restarted"
			c.Message = "kubeha-lab-cri restarted while the container was running; its exit code is unknown"
			c.FinishedAt = now
		}
		s.containers[c.ID] = c
	}
	s.images.setPulled(st.Pulled)
	s.podCIDR = st.PodCIDR
	return s.saveLocked()
}

// saveLocked writes the whole state atomically (temporary file + rename). Callers hold s.mu (or own s).
func (s *server) saveLocked() error {
	st := persistedState{Pulled: s.images.pulledRefs(), PodCIDR: s.podCIDR}
	for _, sb := range s.sandboxes {
		st.Sandboxes = append(st.Sandboxes, sb)
	}
	for _, c := range s.containers {
		st.Containers = append(st.Containers, c)
	}
	data, err := json.MarshalIndent(&st, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.stateFile() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.stateFile())
}

// persist is saveLocked for call sites that cannot return the error: a state file that cannot be written is
// logged loudly, the in-memory state stays authoritative for this run.
func (s *server) persist() {
	if s.abandoned {
		return
	}
	if err := s.saveLocked(); err != nil {
		log.Printf("ERROR writing %s: %v", s.stateFile(), err)
	}
}

// newID returns 64 hex characters, the shape of container and sandbox IDs that other runtimes use.
func newID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func labelsMatch(have, selector map[string]string) bool {
	for k, v := range selector {
		if have[k] != v {
			return false
		}
	}
	return true
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// abandon stops this server from writing the state dir, as if it had died: a successor may own it now.
// main calls it on shutdown, so that the last exits seen while stopping do not overwrite the record of the
// containers as running (which the successor then reports as "runtime restarted").
func (s *server) abandon() {
	s.mu.Lock()
	s.abandoned = true
	s.mu.Unlock()
}
