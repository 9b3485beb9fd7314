"""ROS 2 nodes of vla_rft (policy, recorder, simulated robot, evaluation manager).

The node logic is written once and run by two hosts: rclpy on a ROS 2 robot and Cyclone DDS
where ROS 2 is not installed. The nodes arrive with the ROS 2 issue; this package holds them.
"""
