"""Runtime settings for the real services: Ray (local or a cluster) and MLflow. Deploy files live beside."""
