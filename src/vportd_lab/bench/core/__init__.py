"""The core benchmark (`vportctl bench --suite core`): throughput and memory, in-process.

What runs (nothing here is mocked except the wire and the switches):

* **Topology**: a pod fabric. One core switch, P = round(sqrt(S)) - 1 pod
  (aggregation) switches linked to it, every other switch a hypervisor linked
  to one pod switch; the core is the fabric's centre, hence the root of the
  default routes and of the flooding tree. VMs run on hypervisors only.
  `Topology.precompute` fills the fabric's own caches before timing (that
  time is reported on its own); each controller learns the fabric as its
  inputs and fills its own caches during the run, as after a topology
  change, so that cost counts in its events/s.
* **Cluster**: `SimCluster` with `fabric=False`: real `Controller`s (table,
  flow compiler, the leader's coordinator) exchanging their real messages
  through the in-process FIFO queue; flow mods are counted, not applied.
* **Workload**: a seeded, deterministic VM manager running up to
  `CONCURRENCY` operations at once, interleaved step by step: VM boot (port
  add, link up), link flaps, address updates, live migrations through the
  whole handshake (leader notify, vPort syncs, sync complete answers, then the
  destination port's add and link up, i.e. activation, and the source port's
  delete), aborted migrations, and VM removals. Every port event (add, modify,
  delete) counts towards `events`; notifies and aborts are extra. Peer
  messages are delivered every `DELIVER_EVERY` steps, and the clock moves one
  second (with a `tick` of every controller) every `TICK_EVERY` steps.
* **Time** is accounted per controller, around every call into it
  (`port_event`, `receive`, `notify`, `abort`, `tick`): the generator, the
  queue and the bookkeeping here are not in it. A controller's events are the
  port events of the switches it masters plus the peer port-event syncs it
  merges. Cyclic GC pauses are timed too (`gc.callbacks`) and shown apart:
  one lands in whichever call allocates when it is due. The GC runs as a
  controller's would: default thresholds, no `gc.freeze()` (a daemon may use
  those; the figures here do not).
* **Memory**: with `tracemalloc`, the bytes allocated to rebuild one
  controller's `table` and `flows` (its flow compiler) from a pickle of them,
  the topology left out (shared, reported apart): a faithful copy of exactly
  the objects that state holds, as a controller process of its own would hold
  them. A walk of the live objects with `sys.getsizeof` cross-checks it (it
  also sees the slack of dicts that shrank). Divided by the live vPorts.
"""
