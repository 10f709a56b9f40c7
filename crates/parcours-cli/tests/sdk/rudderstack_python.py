"""Drives RudderStack's official Python SDK (rudder-sdk-python), unmodified, against a Parcours
node, with gzip on (its default) so that every batch arrives compressed.

Usage: rudderstack_python.py DATA_PLANE_URL WRITE_KEY RUN_ID
"""
import sys

import rudderstack.analytics as rudder

url, write_key, run = sys.argv[1], sys.argv[2], sys.argv[3]
errors = []
rudder.write_key = write_key
rudder.dataPlaneUrl = url
rudder.gzip = True
rudder.sync_mode = False
rudder.max_retries = 3
rudder.on_error = lambda error, items: errors.append(repr(error))

rudder.page(anonymous_id=f"ranon-{run}", name="Home", properties={"path": "/"})
rudder.identify(
    user_id=f"ruser-{run}",
    anonymous_id=f"ranon-{run}",
    traits={"email": f"Rudder-{run}@Example.com", "first_name": "Grace"},
)
rudder.track(user_id=f"ruser-{run}", event="Order Completed", properties={"order_id": f"ro-{run}", "total": 12.5})
rudder.flush()
rudder.shutdown()
if errors:
    print("SDK errors:", errors)
    sys.exit(1)
print("sent 3 calls")
