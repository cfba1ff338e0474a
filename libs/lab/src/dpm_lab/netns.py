"""The lab in namespace mode: one network namespace per machine on a lab bridge (needs root),
each running ``dpm_lab.node``. Used by ``dpm lab up --netns`` and by the tests."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from dpm_lab.node import READY, NodeSpec
from dpm_runtime.testing.netlab import LabHost, NetLab


@dataclass
class Node:
    host: LabHost
    spec: NodeSpec
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class NamespaceLab:
    """Start with ``start``; ``stop`` ends every node (and the agents they run)."""

    lab: NetLab
    work: Path
    nodes: list[Node] = field(default_factory=list)

    def start(
        self,
        n: int,
        *,
        prefix: str,
        ports: dict[str, int],
        gateway_url: str | None = None,
        enrolment_token: str | None = None,
        disks: list[Path] | None = None,
        ready_timeout: float = 60.0,
    ) -> list[Node]:
        """``ports``: dhcp, tftp and wol (as dpm listens and sends). With ``gateway_url`` and
        ``enrolment_token`` each machine's OS is a real agent."""
        self.work.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            host = self.lab.hosts[i] if i < len(self.lab.hosts) else self.lab.add_host(i)
            name = f"{prefix}{i:02d}"
            agent = None
            if gateway_url and enrolment_token:
                agent = self.work / f"{name}-agent.toml"
                agent.write_text(
                    f'server = "{gateway_url}"\nenrolment_token = "{enrolment_token}"\n'
                    f'state_dir = "{self.work / name}"\nmacs = ["{host.mac}"]\nhostname = "{name}"\n'
                    f'smbios_uuid = "{_uuid(name)}"\ninventory = false\nmax_backoff = 1.0\npower_driver = "lab"\n'
                )
            spec = NodeSpec(
                name=name, mac=host.mac, smbios_uuid=str(_uuid(name)), address=str(host.ip),
                server_ip=str(self.lab.host_ip), tftp_port=ports["tftp"], dhcp_port=ports["dhcp"],
                wol_port=ports["wol"], agent_config=str(agent) if agent else None,
                disk=str(disks[i]) if disks else None,
            )  # fmt: skip
            (path := self.work / f"{name}.json").write_text(spec.to_json())
            log = self.work / f"{name}.log"
            with open(log, "wb") as out:
                proc = self.lab.popen(
                    host, [sys.executable, "-m", "dpm_lab.node", str(path)], stdout=out, stderr=subprocess.STDOUT
                )
            self.nodes.append(Node(host, spec, proc, log))
        self._wait_listening(time.monotonic() + ready_timeout)
        return self.nodes

    def _wait_listening(self, deadline: float) -> None:
        """Until every machine listens for its magic packet: a wake sent earlier would be lost."""
        for node in self.nodes:
            while READY not in node.log.read_text(errors="replace"):
                if node.proc.poll() is not None:
                    raise RuntimeError(f"lab machine {node.spec.name} exited ({node.proc.returncode}); see {node.log}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"lab machine {node.spec.name} not listening yet; see {node.log}")
                time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.proc.terminate()
        for node in self.nodes:
            try:
                node.proc.wait(15)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()


def _uuid(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.lab.dpm")
