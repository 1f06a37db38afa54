"""k8slite-dns: the cluster's DNS server, answering as CoreDNS's kubernetes plugin does."""
