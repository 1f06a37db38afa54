"""The pod network across hosts: the node network agent and the kubelet's bridge plugin."""
