"""Real rclpy nodes over DDS, isolated on loopback with a test-unique domain id.

The environment is set before rclpy is imported anywhere in the session: discovery stays on
localhost and the domain id is derived from the pid, so parallel test runs never meet.

Tests wait on events, never on time: `wait_for` returns as soon as its condition holds, so
its deadline only bounds how long a failure takes to report and can be generous (a loaded
2-core box delivers what an idle one does, many times slower). A message is published only
once its receiver is matched (`wait_matched` for the probe's publishers,
`wait_subscribed` for the node's), since DDS drops what a volatile publisher sends before.
"""
import os
import threading
import time

import pytest

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ['ROS_DOMAIN_ID'] = str(1 + os.getpid() % 100)

rclpy = pytest.importorskip('rclpy')

DEADLINE = 120.0  # seconds before any wait on the graph or on a message fails


def wait_for(condition, timeout=DEADLINE, period=0.01, what='condition', state=None):
    """Poll `condition()` until true; fail the test after `timeout` seconds, with what
    `state()` says of the nodes then (counters, threads) so a rare hang can be diagnosed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(period)
    seen = f'; then: {state()}' if state is not None else ''
    raise AssertionError(f'timed out after {timeout:.0f} s waiting for {what}{seen}')


class Spinner:
    """A MultiThreadedExecutor spinning a set of nodes in a background thread."""

    def __init__(self, context):
        from rclpy.executors import MultiThreadedExecutor
        self.executor = MultiThreadedExecutor(num_threads=4, context=context)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:  # context shut down under us at teardown
            pass

    def add(self, *nodes):
        for node in nodes:
            self.executor.add_node(node)
        return nodes[0] if len(nodes) == 1 else nodes

    def remove(self, *nodes):
        for node in nodes:
            self.executor.remove_node(node)

    def close(self):
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=5.0)


class Probe:
    """A plain node that publishes inputs and records what the node under test publishes."""

    def __init__(self, context, name='probe'):
        from rclpy.node import Node
        self.node = Node(name, context=context)
        self.received = {}
        self._lock = threading.Lock()

    def publisher(self, msg_type, topic, qos=10):
        return self.node.create_publisher(msg_type, topic, qos)

    def listen(self, msg_type, topic, qos=10):
        self.received.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, _Recorder(self, topic), qos)

    def record(self, topic, msg):
        with self._lock:
            self.received[topic].append(msg)

    def messages(self, topic):
        with self._lock:
            return list(self.received.get(topic, []))

    def clear(self, topic):
        with self._lock:
            self.received[topic] = []


class _Recorder:
    def __init__(self, probe, topic):
        self.probe, self.topic = probe, topic

    def __call__(self, msg):
        self.probe.record(self.topic, msg)


def wait_matched(publisher, node, topic, timeout=DEADLINE):
    """Sender sees a subscriber and the receiver side sees the publisher."""
    wait_for(lambda: publisher.get_subscription_count() >= 1
             and node.count_publishers(topic) >= 1, timeout, what=f'matching on {topic}')


def wait_subscribed(node, topic, subscribers=1, timeout=DEADLINE):
    """Every publisher of `node` on `topic` is matched with `subscribers` subscriptions, so
    what it publishes next is delivered (the graph seeing an endpoint is not enough)."""
    name = node.resolve_topic_name(topic)

    def matched():
        counts = [p.get_subscription_count() for p in node.publishers if p.topic_name == name]
        return bool(counts) and min(counts) >= subscribers

    wait_for(matched, timeout, what=f'{subscribers} subscriber(s) of {name}')


@pytest.fixture(scope='module')
def ros_context():
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.fixture(scope='module')
def spinner(ros_context):
    spin = Spinner(ros_context)
    yield spin
    spin.close()


@pytest.fixture(scope='module')
def probe(ros_context, spinner):
    p = Probe(ros_context)
    spinner.add(p.node)
    yield p


def diagnostics_of(probe, node_name):
    """The latest DiagnosticStatus values published by `node_name`, as a dict."""
    for msg in reversed(probe.messages('/diagnostics')):
        for status in msg.status:
            if status.hardware_id == node_name:
                return {kv.key: kv.value for kv in status.values}
    return None
