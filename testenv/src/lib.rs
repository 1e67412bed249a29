//! A real etcd and kube-apiserver for tests.
