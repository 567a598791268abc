// Command etcd is the etcd server for the envtest control plane (the upstream main lives in the root module go.etcd.io/etcd/v3).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
