"""Package delivery on the machine: download a package's files into the cache (``download``), install
them (``install``), and keep installs scheduled for later (``pending``). Called by the agent's
remote-update step; nothing here talks to the agent-gateway itself."""
