"""The lab simulator: machines that behave like real ones towards dpm (Wake-on-LAN, PXE, TFTP, iPXE,
the deploy client), as asyncio tasks on loopback (``sim``) or one network namespace each (``netns``).
A library, not part of the CLI, so the tests, the benchmarks and `dpm lab` share it; it speaks the
protocols through dpm_netproto and imports no service."""
