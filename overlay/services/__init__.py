"""The node's long-lived services: reputation (evidence, gossip, trust snapshots) and the local
policy (decisions and their enforcement on libp2p)."""
