"""Sending an install order to a machine's agent, after the delivery was committed: a NATS request on
``dpm.cmd.agent.<machine>.install`` (only the updater may publish it), which the gateway replica
holding the machine's session passes on. The agent answers at once -- accepted, or refused -- and
installs in the background, reporting to the updater's ``/v1/reports``.

When the order cannot be handed over (no session anywhere, the agent refused it, no answer), the
delivery ends now with that code (the step fails, the auto-update ends) rather than at a timeout.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from dpm_runtime.eventlog import ANY_VERSION, EventLog
from dpm_schemas import DpmError, E, Metadata, NewEvent, agent_protocol, subjects
from dpm_schemas.agent_protocol import Action, Command, CommandResult, InstallOrder
from dpm_schemas.base import Event
from dpm_schemas.ids import stream_id

log = logging.getLogger(__name__)
ORDER_TIMEOUT = 30.0  # seconds for the agent to accept: it answers before it downloads anything
ORDER_ATTEMPTS = 2  # an agent that accepted but whose answer was lost accepts the same order again


@dataclass
class Deliverer:
    nc: NATS
    eventlog: EventLog
    server: str | DpmError  # the updater's URL as agents reach it (DPM_UPDATER_PUBLIC_URL), or why unknown

    def agent_url(self) -> str:
        if isinstance(self.server, DpmError):
            raise self.server
        return self.server

    async def send(
        self, machine_id: uuid.UUID, order: InstallOrder, meta: Metadata, failed: Callable[[str, str], Event]
    ) -> None:
        """Hand the order over; if it cannot be, record ``failed(code, message)`` on the delivery's stream."""
        cmd = Command(id=uuid.uuid4(), action=Action.INSTALL, install=order)
        for _attempt in range(ORDER_ATTEMPTS):  # a lost answer is asked again: the agent takes an order once
            failure = await self._hand_over(machine_id, cmd)
            if failure is None or failure[0] != E.AGENT_TIMEOUT.code:
                break
        if failure is None:
            log.info("install order of execution %s accepted by machine %s", order.execution_id, machine_id)
            return
        code, message = failure
        log.warning("install order of execution %s not delivered: %s %s", order.execution_id, code, message)
        await self.eventlog.append(
            stream_id(subjects.DELIVERY, order.execution_id),
            ANY_VERSION,
            [NewEvent(failed(code, message[:1000]), meta)],
        )

    async def _hand_over(self, machine_id: uuid.UUID, cmd: Command) -> tuple[str, str] | None:
        """None once the agent accepted the order, else (code, message)."""
        subject = subjects.agent_command(machine_id, Action.INSTALL.value)
        try:
            reply = await self.nc.request(subject, agent_protocol.encode(cmd), timeout=ORDER_TIMEOUT)
            result = agent_protocol.decode(reply.data)
        except NoRespondersError:
            err = E.AGENT_OFFLINE(machine_id=machine_id)
            return err.code, err.message
        except (NatsTimeout, TimeoutError):
            late = E.AGENT_TIMEOUT(machine_id=machine_id, action="install", timeout=ORDER_TIMEOUT)
            return late.code, late.message
        except (NatsError, agent_protocol.FrameError) as exc:
            return E.AGENT_TIMEOUT.code, f"the install order could not be sent: {exc!r}"[:1000]
        if not isinstance(result, CommandResult):
            return E.INVALID_REQUEST.code, "the gateway answered the install order with something else"
        if not result.ok:
            return result.code or E.AGENT_REFUSED.code, result.message[:1000] or "the agent refused the order"
        return None
