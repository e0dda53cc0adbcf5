"""The live site: limits, topology, state, controller, dispatch, REST routes."""
