"""Sensor and band registry: wavelengths, resolutions, default band groups and normalisation statistics.

Public API: `get_sensor(name)`, `list_sensors()`, `register_sensor(yaml_path)`, `load_sensor_yaml(path)`,
`Sensor` (`.band(name)`, `.select(names)`, `.groups_for(bands)`) and `Band`.
"""

from rsneo.sensors.registry import Band, Sensor, get_sensor, list_sensors, load_sensor_yaml, register_sensor

__all__ = ["Band", "Sensor", "get_sensor", "list_sensors", "load_sensor_yaml", "register_sensor"]
