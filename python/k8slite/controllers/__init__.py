"""The controllers run by k8slite-controller-manager."""
