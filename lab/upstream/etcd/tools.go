//go:build tools

// The lab builds etcd's upstream main packages as they are: this file only keeps them, and so every module
// they need, in go.mod and go.sum. See ../build.sh.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
