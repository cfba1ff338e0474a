"""Power actions behind one interface: Wake-on-LAN now; the agent (shutdown/reboot) and IPMI/Redfish
plug in as further drivers."""
