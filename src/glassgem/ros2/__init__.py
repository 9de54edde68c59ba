"""ROS 2: glass masks for bags (`glassgem predict BAG`) and a live node (`glassgem ros2 node`).

messages.py converts image messages to arrays and masks to message fields; frames.py holds the per-frame
logic both paths share; bag_input.py, bag_output.py and bag_predict.py read, write and run bags with the
`rosbags` package (the `ros` extra); node.py is the live node, the only module that imports rclpy (from a
ROS 2 install), and only when the node starts. Nothing here needs ROS installed to import.
"""
