"""NumberedPusher: TFX's Pusher (same spec, inputs and outputs) with versions numbered 1, 2, 3."""
from tfx.components import Pusher
from tfx.dsl.components.base import executor_spec

from components.numbered_pusher import executor


class NumberedPusher(Pusher):
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
