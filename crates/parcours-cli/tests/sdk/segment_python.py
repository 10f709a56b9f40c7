"""Drives Segment's official Python SDK, unmodified, against a Parcours node.

Usage: segment_python.py HOST WRITE_KEY RUN_ID
"""
import sys

import segment.analytics as analytics

host, write_key, run = sys.argv[1], sys.argv[2], sys.argv[3]
errors = []
analytics.write_key = write_key
analytics.host = host
analytics.sync_mode = False
analytics.max_retries = 3
analytics.on_error = lambda error, items: errors.append(repr(error))

analytics.page(anonymous_id=f"anon-{run}", name="Home", properties={"path": "/"})
analytics.track(anonymous_id=f"anon-{run}", event="Product Viewed", properties={"sku": "sku-1", "price": 49.0})
analytics.identify(
    user_id=f"user-{run}",
    anonymous_id=f"anon-{run}",
    traits={"email": f"SDK-{run}@Example.com", "first_name": "Ada"},
)
analytics.track(user_id=f"user-{run}", event="Order Completed", properties={"order_id": f"o-{run}", "total": 49.0})
analytics.group(user_id=f"user-{run}", group_id="acme", traits={"name": "ACME"})
analytics.alias(previous_id=f"anon-{run}", user_id=f"user-{run}")
analytics.screen(user_id=f"user-{run}", name="Cart")
analytics.flush()
analytics.shutdown()
if errors:
    print("SDK errors:", errors)
    sys.exit(1)
print("sent 7 calls")
