"""One lab machine in its own network namespace (the lab's realism mode):

    ip netns exec NS python -m dpm_lab.node SPEC.json

It waits for its Wake-on-LAN packet, then boots like the loopback lab's machines do -- but its
DHCP DISCOVER is a real broadcast on the lab bridge, from its own interface and MAC. A deploy
script runs the real deploy client on its disk-image file; a local boot starts its OS: the real
dpm agent, whose lab power driver ends it on shutdown or reboot (and a reboot boots the machine
again, through the network if dpm waits for that).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import httpx

from dpm_agent.config import AgentConfig
from dpm_agent.power import last_power_action
from dpm_lab.sim import Lab, LabConfig, SimMachine


@dataclass(frozen=True)
class NodeSpec:
    name: str
    mac: str
    smbios_uuid: str
    address: str
    server_ip: str  # pxe's TFTP address (DHCP goes to the broadcast address)
    tftp_port: int
    dhcp_port: int
    wol_port: int
    agent_config: str | None = None
    disk: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def load(cls, path: Path) -> NodeSpec:
        return cls(**json.loads(path.read_text()))


async def run_agent(config_path: Path, machine: SimMachine) -> str:
    """The machine's OS: the agent until it exits; then what its power driver was last told."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "dpm_agent", "--config", str(config_path))
    print(f"{machine.name}: OS up (agent pid {proc.pid})", flush=True)
    try:
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
    action = last_power_action(AgentConfig.load(config_path).state_dir)
    (AgentConfig.load(config_path).state_dir / "power.log").unlink(missing_ok=True)
    return "reboot" if action == "reboot" else "off"


READY = "off, waiting for Wake-on-LAN on port"


async def main(spec: NodeSpec) -> None:
    machine = SimMachine(
        name=spec.name, mac=spec.mac, smbios_uuid=uuid.UUID(spec.smbios_uuid), address=IPv4Address(spec.address),
        disk=Path(spec.disk) if spec.disk else None,
    )  # fmt: skip
    config = LabConfig(
        dhcp=("255.255.255.255", spec.dhcp_port), tftp=(spec.server_ip, spec.tftp_port), wol_port=spec.wol_port,
        timeout=10.0,
    )  # fmt: skip
    agent = Path(spec.agent_config) if spec.agent_config else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with httpx.AsyncClient(timeout=30) as http:
        run_os = (lambda m: run_agent(agent, m)) if agent else None
        lab = Lab([machine], config, http, run_os=run_os)
        watcher = asyncio.create_task(_report(machine, stop))
        # the line NamespaceLab.start waits for: printed once the magic-packet socket is bound
        await lab.run(stop, ready=lambda: print(f"{machine.name}: {READY} {spec.wol_port}", flush=True))
        watcher.cancel()


async def _report(machine: SimMachine, stop: asyncio.Event) -> None:
    shown = 0
    while not stop.is_set():
        for stage in machine.stages[shown:]:
            print(f"{machine.name}: {stage}", flush=True)
        shown = len(machine.stages)
        await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(main(NodeSpec.load(Path(sys.argv[1]))))
