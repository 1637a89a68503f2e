"""The attack lab's scenarios, one module each (see carevault.attacklab.scenario)."""
