pub mod etcd_cluster;
