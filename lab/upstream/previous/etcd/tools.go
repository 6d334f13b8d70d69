//go:build tools

// The previous release set (see ../../build.sh): etcd's upstream main packages as ../../etcd, one minor version
// older (3.5; an upgrade to 3.6 needs at least 3.5.26), for the lab's upgrade test.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
