"""The service proxy: userspace load balancer and nftables rules."""
